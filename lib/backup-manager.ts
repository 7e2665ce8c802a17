import { access, mkdir, lstat, chmod } from 'node:fs/promises'
import { resolve, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type {
  BackupMetadata, BackupResult, BackupStatus, BackupFailure, BackupNowOptions, BackupInfo,
  VerifyResult, RestoreOptions, RestoreResult, DrillResult, DestinationStatus, ReadOptions
} from '../types/index'
import type { ResolvedOptions, DrillOptions, DestinationSettings } from './options'
import { ChangeDetector } from './change-detector'
import { newBackupId } from './backup-id'
import { LocalDestination } from './destinations/local'
import { S3Destination } from './destinations/s3'
import { uncompressedRecord, findBackupAt, type Destination } from './destinations/destination'
import { withRetry } from './retry'
import { takeSnapshot, removeTemp } from './snapshot'
import { verifyInWorker } from './verify'
import { restoreBackup } from './restore'
import { runDrill } from './drill'
import { backupsToDelete } from './retention'
import { Schedule } from './schedule'
import { Lease } from './lease'
import { createEmptyFile, removeFile } from './durable-fs'
import {
  FST_SQLITE_BACKUP_NOT_READY,
  FST_SQLITE_BACKUP_CLOSED,
  FST_SQLITE_BACKUP_INVALID_OPTION,
  FST_SQLITE_BACKUP_INVALID_DATABASE,
  FST_SQLITE_BACKUP_PUBLISH_FAILED,
  FST_SQLITE_BACKUP_SNAPSHOT_FAILED,
  FST_SQLITE_BACKUP_NOT_FOUND,
  FST_SQLITE_BACKUP_TIMEOUT,
  FST_SQLITE_BACKUP_INVALID_DESTINATION
} from './errors'

// Waits between tries of an upload: up to 1 s, 2 s, 4 s... (full jitter), never more than 30 s.
const RETRY_BASE_DELAY = 1000
const RETRY_MAX_DELAY = 30_000

/** One destination and what this process knows of it. */
interface DestinationState {
  destination: Destination
  attempts: number
  lastSuccessAt: Date | null
  lastError: BackupFailure | null
  lastBackupId: string | null
  /** It missed the newest backup: the next run publishes a new one even if nothing changed. */
  lagging: boolean
  kept: { count: number, bytes: number }
}

/** The callers waiting for one run; every one of them called before the run started. */
interface Batch {
  force: boolean
  promise: Promise<BackupResult>
  resolve: (result: BackupResult) => void
  reject: (err: Error) => void
}

/**
 * Owns the backups of one database: runs them on the schedule and on demand, one run at a time, serves list,
 * verify and restore, and shuts everything down. Callers that arrive while a run is in flight share the next run,
 * which starts after their call.
 */
export class BackupManager {
  private readonly states: DestinationState[]
  /** The first local destination: snapshots are taken in it and published there by a rename. */
  private readonly primary: LocalDestination | undefined
  /** Where snapshots and downloads are staged: the primary destination, or the private staging directory. */
  private readonly staging: LocalDestination
  private readonly schedule: Schedule | undefined
  private detector: ChangeDetector | undefined
  private state: 'new' | 'ready' | 'closed' = 'new'
  private active: Promise<void> | undefined
  private queued: Batch | undefined
  /** verify() and restore() calls in flight, awaited (then aborted) at close. */
  private readonly tasks = new Set<Promise<unknown>>()
  /** Backups being read by verify, restore or a drill: retention leaves them for its next pass. */
  private readonly inUse = new Map<string, number>()
  private readonly closing = new AbortController()
  /** Held while this process runs the schedule; other processes sharing the destination skip their ticks. */
  private readonly scheduleLease: Lease
  /** Held for the length of one run, so that processes sharing the destination take turns. */
  private readonly runLease: Lease

  /** data_version read before the snapshot of the newest backup began; equal now means nothing was committed. */
  private versionAtLastBackup: number | undefined
  private newest: BackupMetadata | null = null
  private lastSuccessAt: Date | null = null
  private lastError: BackupFailure | null = null
  private lastVerify: VerifyResult | null = null
  private lastDrill: (DrillResult & { id: string }) | null = null
  private readonly counts = { published: 0, skipped: 0, failed: 0 }

  constructor (private readonly options: ResolvedOptions, private readonly log: FastifyBaseLogger) {
    this.states = options.destinations.map((settings) => ({
      destination: createDestination(settings),
      attempts: settings.type === 's3' ? settings.attempts : 1,
      lastSuccessAt: null,
      lastError: null,
      lastBackupId: null,
      lagging: false,
      kept: { count: 0, bytes: 0 }
    }))
    this.primary = this.states.find((state) => state.destination.type === 'local')?.destination as LocalDestination | undefined
    this.staging = this.primary ?? new LocalDestination(options.destination)
    this.scheduleLease = new Lease(join(options.destination, '.schedule.lock'))
    this.runLease = new Lease(join(options.destination, '.run.lock'))
    if (options.interval > 0) this.schedule = new Schedule(options.interval, () => this.scheduledRun())
  }

  /** The destination that list(), verify() and restore() read: the first one unless told otherwise. */
  private get destination (): Destination {
    return this.states[0].destination
  }

  /**
   * Part of registration: creates the directories and checks each S3 bucket with one HeadBucket. Wrong credentials
   * or a missing bucket fail the registration; an S3 server that cannot be reached is only logged, so that an outage
   * of the backup storage never keeps the app from starting.
   */
  async prepare (): Promise<void> {
    try {
      if (this.primary) await this.primary.ensureDirectory()
      else await ensurePrivateDirectory(this.staging.directory)
    } catch (err) {
      throw new FST_SQLITE_BACKUP_INVALID_DESTINATION(this.staging.directory, (err as Error).message, { cause: err })
    }
    await Promise.all(this.states.map(async ({ destination }) => {
      if (destination === this.primary) return
      try {
        await destination.prepare()
      } catch (err) {
        const code = (err as { code?: string }).code
        if (destination.type === 'local') throw new FST_SQLITE_BACKUP_INVALID_DESTINATION(destination.name, (err as Error).message, { cause: err })
        // Ours (credentials refused, no bucket, keys that do not match) is a mistake in the setup: no retry fixes it.
        if (code?.startsWith('FST_') === true) throw err
        this.log.warn({ err, destination: destination.name }, 'sqlite backup: cannot reach %s at startup; backups to it will be retried', destination.name)
      }
    }))
  }

  /** With `restoreIfMissing`: puts the newest good backup where the database should be, before the app opens it. */
  async restoreIfMissing (): Promise<void> {
    const path = this.options.databasePath
    if (await access(path).then(() => true, () => false)) return
    const destination = this.destination
    for (const backup of await destination.list()) {
      if (!backup.good) continue
      try {
        await this.withBackupInUse(backup.id, () => this.withLocalCopy(destination, backup, (backupPath) => restoreBackup(
          { id: backup.id, backupPath, expected: expectedOf(backup.metadata), to: path, force: false },
          { timeout: this.options.timeout, signal: this.closing.signal }
        )))
        this.log.info({ backup: { id: backup.id, path: backup.path }, database: path }, 'sqlite backup: the database was missing; restored it from the newest good backup')
        return
      } catch (err) {
        const code = (err as { code?: string }).code
        if (code !== 'FST_SQLITE_BACKUP_VERIFY_FAILED' && code !== 'FST_SQLITE_BACKUP_DECRYPT_FAILED') throw err
        this.log.error({ err, backup: { id: backup.id } }, 'sqlite backup: skipping a backup that fails verification; trying an older one')
      }
    }
    throw new FST_SQLITE_BACKUP_INVALID_DATABASE(`the file "${path}" does not exist and "${destination.name}" holds no good backup to restore`)
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
    if (!this.primary) await this.removeLeftovers(this.staging)
    await Promise.all(this.states.map(async (state) => {
      try {
        await this.removeLeftovers(state.destination)
        const backups = await state.destination.list()
        state.kept = keptOf(backups)
        state.lastBackupId = backups[0]?.id ?? null
        if (state === this.states[0]) this.newest = backups.find((backup) => backup.metadata !== null)?.metadata ?? null
      } catch (err) {
        // A local directory that cannot be read is a broken setup; an offsite store may just be away for now.
        if (state.destination.type === 'local') throw err
        this.log.warn({ err, destination: state.destination.name }, 'sqlite backup: cannot list %s at startup; backups to it will be retried', state.destination.name)
      }
    }))
    this.state = 'ready'
    if (this.schedule) this.schedule.start(this.options.runOnStart ? 0 : this.options.interval)
    else if (this.options.runOnStart) this.scheduledRun()
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
      ...this.counts,
      lastVerify: this.lastVerify,
      lastDrill: this.lastDrill,
      kept: { ...this.states[0].kept },
      destinations: this.states.map((state): DestinationStatus => ({
        name: state.destination.name,
        type: state.destination.type,
        lastSuccessAt: state.lastSuccessAt,
        lastError: state.lastError,
        lastBackupId: state.lastBackupId,
        kept: { ...state.kept }
      }))
    }
  }

  list (options?: ReadOptions): Promise<BackupInfo[]> {
    return this.task(() => this.pick(options).list())
  }

  verify (id?: string, options?: ReadOptions): Promise<VerifyResult> {
    return this.task(async () => {
      const destination = this.pick(options)
      const backup = id === undefined ? await this.newestBackup(destination) : await destination.find(id)
      const checkedAt = new Date()
      const problems = await this.withBackupInUse(backup.id, () => this.withLocalCopy(destination, backup, (path) => verifyInWorker(
        { path, expected: expectedOf(backup.metadata) },
        { timeout: this.options.timeout, signal: this.closing.signal }
      ))).catch((err: Error & { code?: string }) => {
        // A backup that cannot be decrypted is a finding about that backup, like a bad checksum.
        if (err.code === 'FST_SQLITE_BACKUP_DECRYPT_FAILED') return [err.message]
        throw err
      })
      const result: VerifyResult = { ok: problems.length === 0, id: backup.id, path: backup.path, problems, checkedAt, durationMs: Date.now() - checkedAt.getTime() }
      this.lastVerify = result
      if (result.ok) this.log.info({ backup: { id: backup.id } }, 'sqlite backup verified')
      else this.log.error({ backup: { id: backup.id }, problems }, 'sqlite backup failed verification')
      return result
    })
  }

  restore (target: string | { at: Date | string }, options: RestoreOptions): Promise<RestoreResult> {
    return this.task(async () => {
      if (options === null || typeof options !== 'object' || typeof options.to !== 'string' || options.to === '' || options.to.includes('\0')) {
        throw new FST_SQLITE_BACKUP_INVALID_OPTION('restore(backup, options)', 'options such as { to: \'/path/of/restored.db\', force: false }')
      }
      const destination = this.pick(options)
      const backup = await this.findTarget(destination, target)
      const started = Date.now()
      const to = resolve(options.to)
      const { sha256, bytes } = await this.withBackupInUse(backup.id, () => this.withLocalCopy(destination, backup, (backupPath) => restoreBackup(
        { id: backup.id, backupPath, expected: expectedOf(backup.metadata), to, force: options.force === true, livePath: this.options.databasePath },
        { timeout: this.options.timeout, signal: this.closing.signal }
      )))
      this.log.info({ backup: { id: backup.id }, to }, 'sqlite backup restored')
      return { id: backup.id, path: to, bytes, sha256, durationMs: Date.now() - started }
    })
  }

  /** Stops the schedule, waits up to `closeTimeout` for work in flight, then aborts it and releases everything. */
  async close (): Promise<void> {
    if (this.state === 'closed') return
    this.state = 'closed'
    this.schedule?.stop()
    if (this.queued) {
      this.queued.reject(new FST_SQLITE_BACKUP_CLOSED())
      this.queued = undefined
    }
    const inFlight = Promise.allSettled([this.active, ...this.tasks]).then(() => {})
    if (!await settlesWithin(inFlight, this.options.closeTimeout)) {
      this.log.warn({ closeTimeout: this.options.closeTimeout }, 'sqlite backup: work was still running at close; aborting it')
      this.closing.abort()
      await inFlight
    }
    this.scheduleLease.release()
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
    // Of all the processes sharing this destination, only the one holding the schedule lease runs the schedule.
    // It keeps the lease until it closes or dies; then the next process whose timer fires takes it over.
    if (!this.tryScheduleLease()) return
    // run() has already logged and recorded any failure; a scheduled failure must never reach the app.
    await this.now().catch(() => {})
  }

  private tryScheduleLease (): boolean {
    const wasHeld = this.scheduleLease.held
    try {
      if (this.scheduleLease.tryAcquire()) {
        if (!wasHeld) this.log.debug('sqlite backup: this process now runs the backup schedule for this destination')
        return true
      }
      this.log.debug('sqlite backup: another process runs the backup schedule for this destination; skipping')
    } catch (err) {
      this.log.error({ err }, 'sqlite backup: cannot open the schedule lease; skipping this scheduled run')
    }
    return false
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
        this.notify('onBackup', result)
      }
      return result
    } catch (err) {
      const error = err as Error & { code?: string }
      this.counts.failed++
      this.lastError = { at: new Date(), code: error.code ?? 'UNKNOWN', message: error.message }
      this.log.error({ err: error }, 'sqlite backup failed')
      this.notify('onError', error)
      throw error
    }
  }

  private async backup (force: boolean, startedAt: Date): Promise<BackupResult> {
    const version = this.readVersion()
    // A destination that missed the newest backup gets a new one, even if nothing changed since.
    force ||= this.states.some((state) => state.lagging)
    if (!force && this.newest && version !== undefined && version === this.versionAtLastBackup) {
      return this.result(this.newest, true, startedAt)
    }

    try {
      // Recreated if someone removed it since the start.
      if (this.primary) await this.primary.ensureDirectory()
      else await ensurePrivateDirectory(this.staging.directory)
    } catch (err) {
      throw new FST_SQLITE_BACKUP_PUBLISH_FAILED(this.staging.directory, (err as Error).message, { cause: err })
    }
    // One run at a time across every process sharing this destination, however long the wait.
    await this.acquireRunLease()
    try {
      return await this.backupUnderLease(force, startedAt, version)
    } finally {
      this.runLease.release()
    }
  }

  private async backupUnderLease (force: boolean, startedAt: Date, version: number | undefined): Promise<BackupResult> {
    const id = newBackupId(startedAt)
    const tempPath = this.staging.tempPath(id, 'sqlite')
    try {
      await createEmptyFile(tempPath)
    } catch (err) {
      throw new FST_SQLITE_BACKUP_PUBLISH_FAILED(this.staging.directory, (err as Error).message, { cause: err })
    }
    const snapshot = await takeSnapshot(
      { source: this.options.databasePath, tempPath },
      { timeout: this.options.timeout, signal: this.closing.signal }
    )

    // Same bytes as the newest backup, whichever process made it (e.g. the first run after a restart with no
    // commits since): keep just one.
    this.newest = await this.newestOnDisk()
    if (!force && this.newest && snapshot.sha256 === this.newest.sha256) {
      await removeTemp(tempPath)
      this.versionAtLastBackup = version
      return this.result(this.newest, true, startedAt)
    }

    const metadata: BackupMetadata = uncompressedRecord({
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
    })
    // The primary directory gets the snapshot by a rename; every other destination gets a copy of that file.
    let source = tempPath
    const records = new Map<DestinationState, BackupMetadata>()
    const primaryState = this.states.find((state) => state.destination === this.primary)
    try {
      if (this.primary && primaryState) {
        try {
          source = await this.primary.publish(tempPath, metadata)
        } catch (err) {
          const error = new FST_SQLITE_BACKUP_PUBLISH_FAILED(this.primary.directory, (err as Error).message, { cause: err })
          this.recordFailure(primaryState, error)
          throw error
        }
        this.recordSuccess(primaryState, metadata)
        records.set(primaryState, metadata)
      }
      if (this.options.drill) await this.drill(source, metadata, this.options.drill)
      const others = this.states.filter((state) => state !== primaryState)
      const outcomes = await Promise.all(others.map((state) => this.putWithRetry(state, source, metadata)))
      const failures: Array<[DestinationState, Error]> = []
      others.forEach((state, index) => {
        const outcome = outcomes[index]
        if (outcome instanceof Error) failures.push([state, outcome])
        else records.set(state, outcome)
      })
      // Nowhere: the run failed, and says so once. Somewhere: each destination that missed it is reported.
      if (records.size === 0) throw failures[0][1]
      for (const [{ destination }, error] of failures) {
        this.log.error({ err: error, destination: destination.name }, 'sqlite backup: could not publish to %s; the other destinations have the backup, and the next run publishes a new one there', destination.name)
        this.notify('onError', error)
      }
    } finally {
      if (!this.primary) await removeTemp(tempPath)
    }

    const stored = records.get(this.states[0]) ?? records.values().next().value!
    this.newest = stored
    this.versionAtLastBackup = version
    for (const state of records.keys()) await this.applyRetention(state)
    return this.result(stored, false, startedAt, [...records.keys()][0].destination)
  }

  /** Publishes to one destination, retrying what may pass (network, 5xx) with backoff; a failure stays with it. */
  private async putWithRetry (state: DestinationState, source: string, metadata: BackupMetadata): Promise<BackupMetadata | Error> {
    const { destination } = state
    try {
      const record = await withRetry(() => destination.put(source, metadata, this.closing.signal), {
        attempts: state.attempts,
        baseDelay: RETRY_BASE_DELAY,
        maxDelay: RETRY_MAX_DELAY,
        signal: this.closing.signal,
        retryable: (err) => destination.isTransient?.(err) ?? false,
        onRetry: (err, attempt, delay) => this.log.warn({ err, destination: destination.name, attempt, delay }, 'sqlite backup: publishing to %s failed; retrying in %d ms', destination.name, delay)
      })
      this.recordSuccess(state, record)
      return record
    } catch (err) {
      const coded = (err as { code?: string }).code?.startsWith('FST_') === true
      const error = coded ? err as Error : new FST_SQLITE_BACKUP_PUBLISH_FAILED(destination.name, (err as Error).message, { cause: err })
      this.recordFailure(state, error)
      return error
    }
  }

  private recordSuccess (state: DestinationState, metadata: BackupMetadata): void {
    state.lastSuccessAt = new Date()
    state.lastBackupId = metadata.id
    state.lastError = null
    state.lagging = false
  }

  private recordFailure (state: DestinationState, error: Error & { code?: string }): void {
    state.lastError = { at: new Date(), code: error.code ?? 'UNKNOWN', message: error.message }
    state.lagging = true
  }

  /** Waits for the run lease, up to `timeout`; close() stops the wait. */
  private async acquireRunLease (): Promise<void> {
    const waiting = new AbortController()
    const timer = setTimeout(() => waiting.abort(), this.options.timeout)
    const onClose = (): void => waiting.abort()
    this.closing.signal.addEventListener('abort', onClose, { once: true })
    try {
      await this.runLease.acquire(waiting.signal)
    } catch (err) {
      if (this.closing.signal.aborted) throw new FST_SQLITE_BACKUP_CLOSED()
      if (waiting.signal.aborted) throw new FST_SQLITE_BACKUP_TIMEOUT(this.options.timeout)
      throw new FST_SQLITE_BACKUP_PUBLISH_FAILED(this.staging.directory, (err as Error).message, { cause: err })
    } finally {
      clearTimeout(timer)
      this.closing.signal.removeEventListener('abort', onClose)
    }
  }

  private async newestOnDisk (): Promise<BackupMetadata | null> {
    try {
      return (await this.destination.list()).find((backup) => backup.metadata !== null)?.metadata ?? null
    } catch (err) {
      // An offsite first destination may be away: compare with what this process last knew instead.
      if (this.destination.type === 'local') throw err
      return this.newest
    }
  }

  /** Restore drill of a freshly published backup; its outcome is recorded in the backup's metadata. */
  private async drill (path: string, metadata: BackupMetadata, drill: DrillOptions): Promise<void> {
    let outcome: DrillResult
    try {
      outcome = await this.withBackupInUse(metadata.id, () => runDrill(
        path, metadata, drill,
        { timeout: this.options.timeout, signal: this.closing.signal }
      ))
    } catch (err) {
      // Stopped by close or timeout: the backup stays published, without a drill result.
      this.log.warn({ err, backup: { id: metadata.id } }, 'sqlite backup: the restore drill did not complete')
      return
    }
    metadata.drill = outcome
    this.lastDrill = { id: metadata.id, ...outcome }
    try {
      // Destinations published to after the drill get the result in their first record.
      if (this.primary) await this.primary.updateMetadata(metadata)
    } catch (err) {
      this.log.error({ err, backup: { id: metadata.id } }, 'sqlite backup: could not record the restore drill result')
    }
    if (outcome.ok) this.log.info({ backup: { id: metadata.id } }, 'sqlite backup restore drill passed')
    else this.log.error({ backup: { id: metadata.id }, problems: outcome.problems }, 'sqlite backup restore drill FAILED: this backup is marked bad')
  }

  /** Deletes what the retention policy no longer keeps, only ever after a new backup was published. Logged, not thrown. */
  private async applyRetention (state: DestinationState): Promise<void> {
    const { destination } = state
    try {
      const backups = await destination.list()
      const doomed = new Set(backupsToDelete(backups, this.options.keep).filter((id) => !this.inUse.has(id)))
      for (const id of doomed) {
        await destination.remove(id)
        this.log.debug({ backup: { id }, destination: destination.name }, 'sqlite backup deleted by retention')
      }
      // What stays is what was listed minus what was deleted: no second listing (a request per record offsite).
      state.kept = keptOf(backups.filter((backup) => !doomed.has(backup.id)))
    } catch (err) {
      this.log.error({ err, destination: destination.name }, 'sqlite backup: could not delete old backups; they will be retried after the next backup')
    }
  }

  /** A local copy of a backup to read: the file itself, or a download into the staging directory. */
  private async withLocalCopy<T> (destination: Destination, backup: BackupInfo, work: (path: string) => Promise<T>): Promise<T> {
    const local = destination.localFile(backup)
    if (local !== undefined) return await work(local)
    const temp = this.staging.tempPath(`${backup.id}-${randomBytes(4).toString('hex')}`, 'download')
    await ensurePrivateDirectory(this.staging.directory)
    await createEmptyFile(temp)
    try {
      await destination.download(backup, temp, AbortSignal.any([this.closing.signal, AbortSignal.timeout(this.options.timeout)]))
      return await work(temp)
    } finally {
      await removeFile(temp)
    }
  }

  private async removeLeftovers (destination: Destination): Promise<void> {
    const leftovers = await destination.removeLeftovers()
    if (leftovers.length > 0) this.log.info({ leftovers, destination: destination.name }, 'sqlite backup: removed files left by an interrupted backup')
  }

  private pick (options: ReadOptions | undefined): Destination {
    const index = options?.destination ?? 0
    if (options !== undefined && (options === null || typeof options !== 'object')) {
      throw new FST_SQLITE_BACKUP_INVALID_OPTION('options', 'an object such as { destination: 1 }')
    }
    if (!Number.isInteger(index) || index < 0 || index >= this.states.length) {
      throw new FST_SQLITE_BACKUP_INVALID_OPTION('destination', `the index of a destination, from 0 to ${this.states.length - 1}`)
    }
    return this.states[index].destination
  }

  private readVersion (): number | undefined {
    try {
      return this.detector!.version()
    } catch (err) {
      throw new FST_SQLITE_BACKUP_SNAPSHOT_FAILED((err as Error).message, { cause: err })
    }
  }

  private async newestBackup (destination: Destination): Promise<BackupInfo> {
    const [newest] = await destination.list()
    if (!newest) throw new FST_SQLITE_BACKUP_NOT_FOUND('yet', destination.name)
    return newest
  }

  private async findTarget (destination: Destination, target: string | { at: Date | string }): Promise<BackupInfo> {
    if (typeof target === 'object' && target !== null && 'at' in target) {
      const at = new Date(target.at)
      if (Number.isNaN(at.getTime())) throw new FST_SQLITE_BACKUP_INVALID_OPTION('at', 'a Date or an ISO 8601 time')
      return await findBackupAt(destination, at)
    }
    return await destination.find(target)
  }

  /** Tracks a verify/list/restore call so that close() waits for it; refused once closing. */
  private task<T> (work: () => Promise<T>): Promise<T> {
    if (this.state === 'closed') return Promise.reject(new FST_SQLITE_BACKUP_CLOSED())
    const promise = Promise.resolve().then(work)
    this.tasks.add(promise)
    promise.then(() => this.tasks.delete(promise), () => this.tasks.delete(promise))
    return promise
  }

  private async withBackupInUse<T> (id: string, work: () => Promise<T>): Promise<T> {
    this.inUse.set(id, (this.inUse.get(id) ?? 0) + 1)
    try {
      return await work()
    } finally {
      const count = this.inUse.get(id)! - 1
      if (count === 0) this.inUse.delete(id)
      else this.inUse.set(id, count)
    }
  }

  private notify<K extends 'onBackup' | 'onError'> (hook: K, value: Parameters<NonNullable<ResolvedOptions[K]>>[0]): void {
    const callback = this.options[hook] as ((value: unknown) => void) | undefined
    if (!callback) return
    try {
      callback(value)
    } catch (err) {
      this.log.error({ err }, `sqlite backup: the ${hook} callback threw`)
    }
  }

  /** Its path is in the primary directory when there is one, else in the first destination that has it. */
  private result (metadata: BackupMetadata, skipped: boolean, startedAt: Date, where = this.primary ?? this.destination): BackupResult {
    return {
      skipped,
      id: metadata.id,
      path: this.primary ? this.primary.backupPath(metadata.id) : `${where.name}${metadata.file}`,
      bytes: metadata.bytes,
      sha256: metadata.sha256,
      startedAt,
      durationMs: Date.now() - startedAt.getTime(),
      metadata
    }
  }
}

function createDestination (settings: DestinationSettings): Destination {
  return settings.type === 'local' ? new LocalDestination(settings.directory) : new S3Destination(settings)
}

/** The staging directory may sit in a shared temp directory: it must be ours and private, whoever created it. */
async function ensurePrivateDirectory (path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 })
  const stats = await lstat(path)
  if (!stats.isDirectory()) throw new Error(`"${path}" is not a directory`)
  if (process.getuid && stats.uid !== process.getuid()) throw new Error(`"${path}" belongs to another user; set the "staging" option`)
  if ((stats.mode & 0o077) !== 0) await chmod(path, 0o700)
}

function expectedOf (metadata: BackupMetadata | null): { sha256: string, bytes: number } | null {
  return metadata ? { sha256: metadata.sha256, bytes: metadata.bytes } : null
}

function keptOf (backups: BackupInfo[]): { count: number, bytes: number } {
  return { count: backups.length, bytes: backups.reduce((sum, backup) => sum + (backup.metadata?.bytes ?? 0), 0) }
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
