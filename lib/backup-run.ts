import type { FastifyBaseLogger } from 'fastify'
import type { BackupMetadata, BackupResult, DrillResult } from '../types/index'
import type { ResolvedOptions, DrillOptions } from './options'
import type { Staging } from './staging'
import type { Leases } from './leases'
import type { Publisher } from './publisher'
import type { BackupsInUse } from './in-use'
import type { Destination } from './destinations/destination'
import type { Shipper } from './continuous/shipper'
import type { Notify } from './hooks'
import type { TaskThread } from './worker/task-thread'
import { proveChain } from './continuous/chain-proof'
import { ChangeDetector, type DataVersion } from './change-detector'
import { newBackupId, snapshotTime } from './backup-id'
import { uncompressedRecord } from './record'
import { createEmptyFile } from './durable-fs'
import { takeSnapshot, removeTemp } from './snapshot'
import { runDrill } from './drill'
import { FST_SQLITE_BACKUP_INVALID_DATABASE, FST_SQLITE_BACKUP_PUBLISH_FAILED, FST_SQLITE_BACKUP_SNAPSHOT_FAILED, FST_SQLITE_BACKUP_CHAIN_BROKEN } from './errors'

export interface BackupRunContext {
  options: ResolvedOptions
  log: FastifyBaseLogger
  staging: Staging
  leases: Leases
  publisher: Publisher
  inUse: BackupsInUse
  /** Aborted when the app closes: stops the snapshot, the lease wait and the drill. */
  closing: AbortSignal
  /** With continuous backup: snapshots taken while this process follows the WAL become bases of its chain. */
  shipper?: Shipper
  /** The thread snapshots are taken in, kept from one run to the next. */
  snapshotThread: TaskThread
  notify: Notify
}

/**
 * One backup, start to end: is there anything new (O(1)) → the run lease → a snapshot in the staging directory →
 * publish to every destination → the restore drill → retention. Knows the newest backup and the data version it
 * holds, so that a run with nothing new costs one PRAGMA.
 */
export class BackupRun {
  private detector: ChangeDetector | undefined
  /** data_version read before the snapshot of the newest backup began; equal now means nothing was committed. */
  private versionAtLastBackup: DataVersion | undefined
  private newestBackup: BackupMetadata | null = null
  private latestDrill: (DrillResult & { id: string }) | null = null

  constructor (private readonly context: BackupRunContext) {}

  get newest (): BackupMetadata | null {
    return this.newestBackup
  }

  get lastDrill (): (DrillResult & { id: string }) | null {
    return this.latestDrill
  }

  /** Opens the change detector; returns the database's journal mode. */
  open (): string {
    const { databasePath } = this.context.options
    try {
      this.detector = new ChangeDetector(databasePath)
    } catch (err) {
      throw new FST_SQLITE_BACKUP_INVALID_DATABASE(`${(err as Error).message} (${databasePath})`, { cause: err })
    }
    return this.detector.journalMode()
  }

  /** The newest backup the first destination holds at start: the next run compares with it. */
  resume (newest: BackupMetadata | null): void {
    this.newestBackup = newest
  }

  close (): void {
    this.detector?.close()
  }

  async run (force: boolean, startedAt: Date): Promise<BackupResult> {
    const { staging, leases, publisher, options, closing } = this.context
    const version = this.readVersion()
    // A destination that missed the newest backup gets a new one, even if nothing changed since.
    force ||= publisher.lagging
    if (!force && this.newestBackup && version !== undefined && version === this.versionAtLastBackup) {
      return this.result(this.newestBackup, true, startedAt)
    }
    try {
      // Recreated if someone removed it since the start.
      await staging.ensure()
    } catch (err) {
      throw new FST_SQLITE_BACKUP_PUBLISH_FAILED(staging.path, (err as Error).message, { cause: err })
    }
    // One run at a time across every process sharing this destination, however long the wait.
    return await leases.whileRunning(options.timeout, closing, () => this.underLease(force, startedAt, version))
  }

  private async underLease (force: boolean, startedAt: Date, version: DataVersion | undefined): Promise<BackupResult> {
    const { staging, publisher, options, closing } = this.context
    // The id and time are those of the snapshot, taken under the lease: a run that waited for another process's
    // run holds newer data, and must sort after it.
    // No run of this database and destinations is in progress anywhere but here: what one left is a leftover.
    await publisher.removeLocalLeftovers(staging.destination)
    const takenAt = new Date()
    const tempPath = staging.snapshotPath(newBackupId(takenAt))
    try {
      await createEmptyFile(tempPath)
    } catch (err) {
      throw new FST_SQLITE_BACKUP_PUBLISH_FAILED(staging.path, (err as Error).message, { cause: err })
    }
    const snapshot = await takeSnapshot({ source: options.databasePath, tempPath, maxRate: options.maxRate }, { timeout: options.timeout, signal: closing }, { copier: this.context.shipper?.copier, thread: this.context.snapshotThread })

    // Same bytes as the newest backup, whichever process made it (e.g. the first run after a restart with no
    // commits since): keep just one.
    this.newestBackup = await publisher.newestRecord(this.newestBackup)
    if (!force && this.newestBackup && snapshot.sha256 === this.newestBackup.sha256) {
      await removeTemp(tempPath)
      this.versionAtLastBackup = version
      return this.result(this.newestBackup, true, startedAt)
    }

    const createdAt = snapshotTime(takenAt, this.newestBackup)
    const id = newBackupId(createdAt)
    const metadata: BackupMetadata = uncompressedRecord({
      formatVersion: 1,
      id,
      createdAt: createdAt.toISOString(),
      source: options.databasePath,
      file: `${id}.sqlite`,
      bytes: snapshot.bytes,
      sha256: snapshot.sha256,
      sqliteVersion: snapshot.sqliteVersion,
      pageSize: snapshot.pageSize,
      pageCount: snapshot.pageCount,
      journalMode: snapshot.journalMode,
      durationMs: Date.now() - startedAt.getTime()
    })
    if (snapshot.continuity !== undefined) metadata.continuous = snapshot.continuity
    const drill = options.drill
    const published = await publisher.publish(tempPath, metadata, async (source) => {
      if (drill) await this.drill(source, metadata, drill)
    })
    this.newestBackup = published.stored
    this.versionAtLastBackup = version
    this.context.shipper?.basePublished(published.stored)
    // Not while the app closes: close() waits for no deletion (the next run applies the policy).
    if (!closing.aborted) {
      await publisher.applyRetention(published.destinations)
      for (const destination of published.destinations) await this.pruneChanges(destination)
    }
    return this.result(published.stored, false, startedAt, published.storedAt)
  }

  /** Changes no kept snapshot needs any more go with the snapshots retention deleted. */
  private async pruneChanges (destination: Destination): Promise<void> {
    const { shipper, log } = this.context
    if (shipper === undefined) return
    try {
      await shipper.prune(destination)
    } catch (err) {
      log.error({ err, destination: destination.name }, 'sqlite backup: could not delete changes older than the oldest kept snapshot; the next run tries again')
    }
  }

  /** Restore drill of a freshly published backup; its outcome is recorded in the backup's metadata. */
  private async drill (path: string, metadata: BackupMetadata, drill: DrillOptions): Promise<void> {
    const { options, inUse, log, publisher, closing } = this.context
    let outcome: DrillResult
    try {
      outcome = await inUse.during(metadata.id, () => runDrill(path, metadata, drill, { timeout: options.timeout, signal: closing }))
    } catch (err) {
      // Stopped by close or timeout: the backup stays published, without a drill result.
      log.warn({ err, backup: { id: metadata.id } }, 'sqlite backup: the restore drill did not complete')
      return
    }
    metadata.drill = outcome
    this.latestDrill = { id: metadata.id, ...outcome }
    if (outcome.ok) await this.proveChain(path, metadata)
    try {
      // Destinations published to after the drill get the result in their first record.
      if (publisher.primary) await publisher.primary.updateMetadata(metadata)
    } catch (err) {
      log.error({ err, backup: { id: metadata.id } }, 'sqlite backup: could not record the restore drill result')
    }
    if (outcome.ok) log.info({ backup: { id: metadata.id } }, 'sqlite backup restore drill passed')
    else log.error({ backup: { id: metadata.id }, problems: outcome.problems }, 'sqlite backup restore drill FAILED: this backup is marked bad')
  }

  /**
   * With continuous backup, the drill also proves the chain: the previous base, with the changes stored since, must
   * rebuild this one. A chain that does not is reported loudly, and a new chain starts, with a base snapshot of its own.
   */
  private async proveChain (path: string, metadata: BackupMetadata): Promise<void> {
    const { shipper, options, log, publisher, closing, staging, inUse, notify } = this.context
    if (shipper === undefined || metadata.continuous === undefined) return
    let proof
    try {
      // The changes up to this base must be stored before they can be checked.
      await shipper.flush()
      proof = await inUse.during(metadata.id, () => proveChain(publisher.destinations[0], metadata, path, {
        timeout: options.timeout,
        signal: closing,
        downloadPath: (name) => staging.downloadPath(name)
      }))
    } catch (err) {
      log.warn({ err, backup: { id: metadata.id } }, 'sqlite backup: the drill could not check the chain of changes')
      return
    }
    if (proof === undefined) return
    metadata.continuous.proof = proof
    if (proof.ok) {
      log.info({ backup: { id: metadata.id }, from: proof.from, commit: proof.commit }, 'sqlite backup drill: the stored changes rebuild this backup from the previous one')
      return
    }
    const err = new FST_SQLITE_BACKUP_CHAIN_BROKEN(publisher.destinations[0].name, proof.problems.join('; '))
    log.error({ err, backup: { id: metadata.id }, from: proof.from }, 'sqlite backup drill FAILED: the stored changes do not rebuild this backup; restores between the two replay nothing from that chain, and a new chain starts with a base of its own')
    notify('onError', err)
    await shipper.restartChain(`the drill of backup ${metadata.id} found that the stored changes do not rebuild it`)
  }

  private readVersion (): DataVersion | undefined {
    try {
      return this.detector!.version()
    } catch (err) {
      throw new FST_SQLITE_BACKUP_SNAPSHOT_FAILED((err as Error).message, { cause: err })
    }
  }

  /** Its path is in the primary directory when there is one, else in the destination that holds it. */
  private result (metadata: BackupMetadata, skipped: boolean, startedAt: Date, where?: Destination): BackupResult {
    const { primary, destinations } = this.context.publisher
    return {
      skipped,
      id: metadata.id,
      path: primary ? primary.backupPath(metadata.id) : `${(where ?? destinations[0]).name}${metadata.file}`,
      bytes: metadata.bytes,
      sha256: metadata.sha256,
      startedAt,
      durationMs: Date.now() - startedAt.getTime(),
      metadata
    }
  }
}
