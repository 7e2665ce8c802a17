import type { FastifyBaseLogger } from 'fastify'
import type { BackupMetadata, BackupResult, BackupStatus, BackupFailure, BackupNowOptions } from '../types/index'
import type { ResolvedOptions } from './options'
import { ChangeDetector } from './change-detector'
import { LocalDestination, newBackupId } from './destination'
import { takeSnapshot, removeTemp } from './snapshot'
import { expiredBackups } from './retention'
import { Schedule } from './schedule'
import {
  FST_SQLITE_BACKUP_NOT_READY,
  FST_SQLITE_BACKUP_CLOSED,
  FST_SQLITE_BACKUP_INVALID_OPTION,
  FST_SQLITE_BACKUP_INVALID_DATABASE,
  FST_SQLITE_BACKUP_PUBLISH_FAILED,
  FST_SQLITE_BACKUP_SNAPSHOT_FAILED
} from './errors'
import { createEmptyFile } from './durable-fs'

/** The callers waiting for one run; every one of them called before the run started. */
interface Batch {
  force: boolean
  promise: Promise<BackupResult>
  resolve: (result: BackupResult) => void
  reject: (err: Error) => void
}

/**
 * Owns the backup job of one database: runs it on the schedule and on demand, one run at a time, and shuts it
 * down. Callers that arrive while a run is in flight share the next run, which starts after their call.
 */
export class BackupManager {
  private readonly destination: LocalDestination
  private readonly schedule: Schedule | undefined
  private detector: ChangeDetector | undefined
  private state: 'new' | 'ready' | 'closed' = 'new'
  private active: Promise<void> | undefined
  private queued: Batch | undefined
  private readonly closing = new AbortController()

  /** data_version read before the snapshot of the newest backup began; equal now means nothing was committed. */
  private versionAtLastBackup: number | undefined
  private newest: BackupMetadata | null = null
  private lastSuccessAt: Date | null = null
  private lastError: BackupFailure | null = null
  private readonly counts = { published: 0, skipped: 0, failed: 0 }

  constructor (private readonly options: ResolvedOptions, private readonly log: FastifyBaseLogger) {
    this.destination = new LocalDestination(options.destination)
    if (options.interval > 0) this.schedule = new Schedule(options.interval, () => this.scheduledRun())
  }

  /** Creates the destination; part of registration, so an unusable one fails `register`. */
  async prepare (): Promise<void> {
    await this.destination.ensureDirectory()
  }

  /** Runs on `onReady`: quick work only (no backup is awaited here). */
  async start (): Promise<void> {
    try {
      this.detector = new ChangeDetector(this.options.databasePath)
    } catch (err) {
      throw new FST_SQLITE_BACKUP_INVALID_DATABASE(`${(err as Error).message} (${this.options.databasePath})`, { cause: err })
    }
    const journalMode = this.detector.journalMode()
    if (journalMode !== 'wal') {
      this.log.warn({ journalMode }, 'sqlite backup: the database is in %s journal mode, so writers wait while a backup reads it; switch it to WAL (PRAGMA journal_mode = WAL) for backups that block no writer', journalMode)
    }
    const leftovers = await this.destination.removeLeftovers()
    if (leftovers.length > 0) this.log.info({ leftovers }, 'sqlite backup: removed files left by an interrupted backup')
    this.newest = await this.readNewest()
    this.state = 'ready'
    if (this.schedule) this.schedule.start(this.options.runOnStart ? 0 : this.options.interval)
    else if (this.options.runOnStart) this.scheduledRun().catch(() => {})
  }

  now (options: BackupNowOptions = {}): Promise<BackupResult> {
    if (this.state === 'new') return Promise.reject(new FST_SQLITE_BACKUP_NOT_READY())
    if (this.state === 'closed') return Promise.reject(new FST_SQLITE_BACKUP_CLOSED())
    if (options === null || typeof options !== 'object' || !['undefined', 'boolean'].includes(typeof options.force)) {
      return Promise.reject(new FST_SQLITE_BACKUP_INVALID_OPTION('now(options)', 'an object such as { force: true }'))
    }
    let batch = this.queued
    if (batch) {
      batch.force ||= options.force === true
    } else {
      batch = this.queued = newBatch(options.force === true)
      this.startNext()
    }
    return batch.promise
  }

  status (): BackupStatus {
    return {
      running: this.active !== undefined,
      lastBackup: this.newest,
      lastSuccessAt: this.lastSuccessAt,
      lastError: this.lastError,
      nextRunAt: this.schedule?.nextRunAt ?? null,
      ...this.counts
    }
  }

  /** Stops the schedule, waits up to `closeTimeout` for a run in flight, then aborts it and releases everything. */
  async close (): Promise<void> {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.schedule?.stop()
    if (this.queued) {
      this.queued.reject(new FST_SQLITE_BACKUP_CLOSED())
      this.queued = undefined
    }
    if (this.active) {
      if (!await settlesWithin(this.active, this.options.closeTimeout)) {
        this.log.warn({ closeTimeout: this.options.closeTimeout }, 'sqlite backup: a backup was still running at close; aborting it')
        this.closing.abort()
        await this.active
      }
    }
    this.detector?.close()
  }

  private startNext (): void {
    if (this.active || !this.queued) return
    const batch = this.queued
    this.queued = undefined
    // The run is over before its callers hear of it: status() says so, and a caller's next now() starts afresh.
    const settle = (notify: () => void): void => {
      this.active = undefined
      this.startNext()
      notify()
    }
    this.active = this.run(batch.force).then(
      (result) => settle(() => batch.resolve(result)),
      (err: Error) => settle(() => batch.reject(err))
    )
  }

  private async scheduledRun (): Promise<void> {
    // run() has already logged and recorded any failure; a scheduled failure must never reach the app.
    await this.now().catch(() => {})
  }

  private async run (force: boolean): Promise<BackupResult> {
    const startedAt = new Date()
    try {
      const result = await this.backup(force, startedAt)
      this.lastSuccessAt = new Date()
      if (result.skipped) {
        this.counts.skipped++
        this.log.debug({ backup: { id: result.id, durationMs: result.durationMs } }, 'sqlite backup skipped: nothing changed since the newest backup')
      } else {
        this.counts.published++
        this.log.info({ backup: { id: result.id, path: result.path, bytes: result.bytes, sha256: result.sha256, durationMs: result.durationMs } }, 'sqlite backup published')
      }
      return result
    } catch (err) {
      const error = err as Error & { code?: string }
      this.counts.failed++
      this.lastError = { at: new Date(), code: error.code ?? 'UNKNOWN', message: error.message }
      this.log.error({ err: error }, 'sqlite backup failed')
      throw error
    }
  }

  private async backup (force: boolean, startedAt: Date): Promise<BackupResult> {
    const version = this.readVersion()
    if (!force && this.newest && version !== undefined && version === this.versionAtLastBackup) {
      return this.result(this.newest, true, startedAt)
    }

    const id = newBackupId(startedAt)
    const tempPath = this.destination.tempPath(id, 'sqlite')
    try {
      // Recreated if someone removed it since the start; the temp file proves it is writable.
      await this.destination.ensureDirectory()
      await createEmptyFile(tempPath)
    } catch (err) {
      throw new FST_SQLITE_BACKUP_PUBLISH_FAILED(this.destination.directory, (err as Error).message, { cause: err })
    }
    const snapshot = await takeSnapshot({
      source: this.options.databasePath,
      tempPath,
      timeout: this.options.timeout,
      signal: this.closing.signal
    })

    // Same bytes as the newest backup (e.g. first run after a restart with no commits since): keep just one.
    if (!force && this.newest && snapshot.sha256 === this.newest.sha256) {
      await removeTemp(tempPath)
      this.versionAtLastBackup = version
      return this.result(this.newest, true, startedAt)
    }

    const metadata: BackupMetadata = {
      formatVersion: 1,
      id,
      createdAt: startedAt.toISOString(),
      source: this.options.databasePath,
      file: `${id}.sqlite`,
      bytes: snapshot.bytes,
      sha256: snapshot.sha256,
      sqliteVersion: snapshot.sqliteVersion,
      pageSize: snapshot.pageSize,
      pageCount: snapshot.pageCount,
      journalMode: snapshot.journalMode,
      durationMs: Date.now() - startedAt.getTime()
    }
    try {
      await this.destination.publish(tempPath, metadata)
    } catch (err) {
      await removeTemp(tempPath)
      throw new FST_SQLITE_BACKUP_PUBLISH_FAILED(this.destination.directory, (err as Error).message, { cause: err })
    }
    this.newest = metadata
    this.versionAtLastBackup = version
    await this.applyRetention()
    return this.result(metadata, false, startedAt)
  }

  private readVersion (): number | undefined {
    try {
      return this.detector!.version()
    } catch (err) {
      throw new FST_SQLITE_BACKUP_SNAPSHOT_FAILED((err as Error).message, { cause: err })
    }
  }

  /** Deletes the backups beyond `keep`, only ever after a new one was published. A failure here is logged, not thrown. */
  private async applyRetention (): Promise<void> {
    try {
      for (const id of expiredBackups(await this.destination.listIds(), this.options.keep)) {
        await this.destination.remove(id)
        this.log.debug({ backup: { id } }, 'sqlite backup deleted by retention')
      }
    } catch (err) {
      this.log.error({ err }, 'sqlite backup: could not delete old backups; they will be retried after the next backup')
    }
  }

  private async readNewest (): Promise<BackupMetadata | null> {
    const ids = await this.destination.listIds()
    for (const id of ids.reverse()) {
      try {
        return await this.destination.readMetadata(id)
      } catch (err) {
        this.log.warn({ err, backup: { id } }, 'sqlite backup: skipping a backup whose metadata cannot be read')
      }
    }
    return null
  }

  private result (metadata: BackupMetadata, skipped: boolean, startedAt: Date): BackupResult {
    return {
      skipped,
      id: metadata.id,
      path: this.destination.backupPath(metadata.id),
      bytes: metadata.bytes,
      sha256: metadata.sha256,
      startedAt,
      durationMs: Date.now() - startedAt.getTime(),
      metadata
    }
  }
}

function newBatch (force: boolean): Batch {
  const batch = { force } as Batch
  batch.promise = new Promise<BackupResult>((resolve, reject) => {
    batch.resolve = resolve
    batch.reject = reject
  })
  return batch
}

async function settlesWithin (promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<false>((resolve) => { timer = setTimeout(resolve, ms, false) })
  try {
    return await Promise.race([promise.then(() => true), timedOut])
  } finally {
    clearTimeout(timer)
  }
}
