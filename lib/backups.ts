import type { FastifyBaseLogger } from 'fastify'
import type {
  BackupResult, BackupStatus, BackupFailure, BackupNowOptions, BackupInfo, VerifyResult, RestoreOptions,
  RestoreResult, ReadOptions, SyncResult, RestorableWindow
} from '../types/index'
import type { ResolvedOptions } from './options'
import { destinationName } from './destinations/create'
import { Publisher } from './publisher'
import { TaskThread } from './worker/task-thread'
import { BackupRun } from './backup-run'
import { RunQueue } from './run-queue'
import { Staging } from './staging'
import { Leases, leaseScope } from './leases'
import { Schedule } from './schedule'
import { BackupsInUse } from './in-use'
import { Operations, settlesWithin, until } from './operations'
import { createNotify, type Notify } from './hooks'
import { BackupReader } from './backup-reader'
import { Shipper } from './continuous/shipper'
import {
  FST_SQLITE_BACKUP_NOT_READY, FST_SQLITE_BACKUP_CLOSED, FST_SQLITE_BACKUP_INVALID_OPTION,
  FST_SQLITE_BACKUP_INVALID_DATABASE, FST_SQLITE_BACKUP_INVALID_DESTINATION, FST_SQLITE_BACKUP_RESTORE_FAILED,
  FST_SQLITE_BACKUP_NOT_CONTINUOUS
} from './errors'

/** What registration may still spend of Fastify's pluginTimeout (0: no limit). */
export interface RegistrationBudget {
  signal: AbortSignal
  pluginTimeout: number
}

/**
 * The backups of one database, as the app sees them: runs them on the schedule and on demand (one at a time,
 * shared by the callers waiting for it), serves list, verify and restore, reports status, and shuts it all down.
 */
export class Backups {
  private readonly publisher: Publisher
  private readonly staging: Staging
  private readonly leases: Leases
  private readonly backupRun: BackupRun
  private readonly reader: BackupReader
  private readonly queue: RunQueue<BackupResult>
  private readonly schedule: Schedule | undefined
  private readonly shipper: Shipper | undefined
  private readonly inUse = new BackupsInUse()
  private readonly operations = new Operations()
  private readonly closing = new AbortController()
  private readonly notify: Notify
  private phase: 'new' | 'ready' | 'closed' = 'new'

  private lastSuccessAt: Date | null = null
  private lastError: BackupFailure | null = null
  private lastVerify: VerifyResult | null = null
  private readonly snapshotThread = new TaskThread()
  private readonly counts = { published: 0, skipped: 0, failed: 0 }

  constructor (private readonly options: ResolvedOptions, private readonly log: FastifyBaseLogger) {
    this.notify = createNotify(options, log)
    const closing = this.closing.signal
    const scope = leaseScope(options.databasePath, options.destinations.map(destinationName))
    this.publisher = new Publisher(options.destinations, { scope, keep: options.keep, inUse: this.inUse, log, notify: this.notify, closing, maxRate: options.maxRate })
    this.staging = new Staging(options.stagingDirectory, scope, this.publisher.primary, { maxRate: options.maxRate, signal: closing })
    this.leases = new Leases(options.stagingDirectory, scope, log)
    if (options.continuous) {
      this.shipper = new Shipper({
        databasePath: options.databasePath,
        settings: options.continuous,
        destinations: this.publisher.destinations,
        spoolDirectory: options.stagingDirectory,
        scope,
        log,
        closing,
        needBase: () => this.queue.enqueue(true)
      })
    }
    this.backupRun = new BackupRun({ options, log, staging: this.staging, leases: this.leases, publisher: this.publisher, inUse: this.inUse, closing, shipper: this.shipper, notify: this.notify, snapshotThread: this.snapshotThread })
    this.reader = new BackupReader({ options, log, publisher: this.publisher, staging: this.staging, inUse: this.inUse, closing })
    this.queue = new RunQueue((force) => this.runAndReport(force))
    if (options.interval > 0) this.schedule = new Schedule(options.interval, () => this.scheduledRun())
  }

  /**
   * Part of registration: creates the staging directory and checks every destination (one HeadBucket each
   * offsite), within `budget` (what is left of Fastify's pluginTimeout).
   */
  async prepare (budget: RegistrationBudget): Promise<void> {
    try {
      await this.staging.ensure()
    } catch (err) {
      throw new FST_SQLITE_BACKUP_INVALID_DESTINATION(this.staging.path, (err as Error).message, { cause: err })
    }
    await this.publisher.prepare(budget.signal)
  }

  /**
   * With `restoreIfMissing`: puts the newest good backup where the database should be, before the app opens it.
   * Part of registration, so it must end within Fastify's pluginTimeout: past `budget`, it stops cleanly (no file
   * written) and says how to give it the time it needs, rather than leave a restore running behind a failed boot.
   */
  async restoreIfMissing (budget: RegistrationBudget): Promise<void> {
    try {
      // Past the budget, the boot is told at once; the restore, aborted, removes its temp file by itself.
      await until(budget.signal, this.reader.restoreNewestGood(budget.signal))
    } catch (err) {
      if (!budget.signal.aborted) throw err
      throw new FST_SQLITE_BACKUP_RESTORE_FAILED(this.options.databasePath, `restoring it at registration did not finish within the app's pluginTimeout (${budget.pluginTimeout} ms); raise it (for example Fastify({ pluginTimeout: 300_000 }), or 0 for no limit), or restore with the command-line tool before starting the app`, { cause: err })
    }
  }

  /** Runs on `onReady`, within `budget` (Fastify's pluginTimeout applies there too): no backup is awaited here. */
  async start (budget: RegistrationBudget): Promise<void> {
    const journalMode = this.backupRun.open()
    if (this.shipper && journalMode !== 'wal') {
      throw new FST_SQLITE_BACKUP_INVALID_DATABASE(`continuous backup reads the WAL, but the database is in ${journalMode} journal mode; switch it to WAL (PRAGMA journal_mode = WAL) or turn continuous off`)
    }
    if (journalMode !== 'wal') {
      this.log.warn({ journalMode }, 'sqlite backup: the database is in %s journal mode, so writers wait while a backup reads it; switch it to WAL (PRAGMA journal_mode = WAL) for backups that block no writer', journalMode)
    }
    const downloads = await this.staging.removeDeadDownloads()
    if (downloads.length > 0) this.log.info({ leftovers: downloads, staging: this.staging.path }, 'sqlite backup: removed downloads left by processes that are gone')
    const newest = await this.publisher.load(budget.signal)
    this.backupRun.resume(newest)
    if (newest) this.shipper?.basePublished(newest)
    await this.shipper?.start()
    // Started now, beside the app's own start: the first backup then costs what every later one does.
    this.snapshotThread.start()
    this.phase = 'ready'
    if (this.schedule) {
      // Known from the start, so that status() tells at once whether this process backs up on its schedule.
      this.leases.tryLeadSchedule()
      // A new chain's base, already on its way, is the run at start.
      const runNow = this.options.runOnStart && this.shipper?.awaitingBase !== true
      this.schedule.start(runNow ? 0 : this.options.interval)
    } else if (this.options.runOnStart && this.shipper?.awaitingBase !== true) {
      this.runOnceAtStart()
    }
  }

  now (options: BackupNowOptions = {}): Promise<BackupResult> {
    if (this.phase === 'new') return Promise.reject(new FST_SQLITE_BACKUP_NOT_READY())
    if (this.phase === 'closed') return Promise.reject(new FST_SQLITE_BACKUP_CLOSED())
    if (options === null || typeof options !== 'object' || !['undefined', 'boolean'].includes(typeof options.force)) {
      return Promise.reject(new FST_SQLITE_BACKUP_INVALID_OPTION('now(options)', 'an object such as { force: true }'))
    }
    return this.queue.enqueue(options.force === true)
  }

  /** Resolves once every commit made before the call is stored at every destination. */
  sync (): Promise<SyncResult> {
    if (this.phase === 'new') return Promise.reject(new FST_SQLITE_BACKUP_NOT_READY())
    if (this.phase === 'closed') return Promise.reject(new FST_SQLITE_BACKUP_CLOSED())
    const shipper = this.shipper
    if (shipper === undefined) return Promise.reject(new FST_SQLITE_BACKUP_NOT_CONTINUOUS('sync()'))
    return this.track(() => shipper.sync())
  }

  window (options?: ReadOptions): Promise<RestorableWindow | null> {
    return this.track(() => this.reader.window(options))
  }

  status (): BackupStatus {
    const destinations = this.publisher.status()
    if (this.shipper) destinations.forEach((destination, index) => { destination.continuous = this.shipper!.status(index) })
    return {
      running: this.queue.running,
      lastBackup: this.backupRun.newest,
      lastSuccessAt: this.lastSuccessAt,
      lastError: this.lastError,
      nextRunAt: this.leases.scheduleRole === 'another-process' ? null : this.schedule?.nextRunAt ?? null,
      scheduledBy: this.leases.scheduleRole,
      ...this.counts,
      lastVerify: this.lastVerify,
      lastDrill: this.backupRun.lastDrill,
      kept: this.publisher.keptInFirst,
      destinations
    }
  }

  list (options?: ReadOptions): Promise<BackupInfo[]> {
    return this.track(() => this.reader.list(options))
  }

  verify (id?: string, options?: ReadOptions): Promise<VerifyResult> {
    return this.track(async () => {
      const result = await this.reader.verify(id, options)
      this.lastVerify = result
      return result
    })
  }

  restore (target: string | { at: Date | string } | 'latest', options: RestoreOptions): Promise<RestoreResult> {
    return this.track(() => this.reader.restore(target, options))
  }

  /** Stops the schedule, waits up to `closeTimeout` for work in flight, then aborts it and releases everything. */
  async close (): Promise<void> {
    if (this.phase === 'closed') return
    this.phase = 'closed'
    this.schedule?.stop()
    // The follower lets the WAL go last: the run in flight may be taking a base snapshot in its thread.
    const inFlight = Promise.allSettled([this.queue.stop(new FST_SQLITE_BACKUP_CLOSED()), ...this.operations.pending])
      .then(() => this.shipper?.close())
      .then(() => {}, (err: Error) => this.log.error({ err }, 'sqlite backup: continuous backup did not close cleanly'))
    if (!await settlesWithin(inFlight, this.options.closeTimeout)) {
      this.log.warn({ closeTimeout: this.options.closeTimeout }, 'sqlite backup: work was still running at close; aborting it')
      this.closing.abort()
      await inFlight
    }
    await this.shipper?.close()
    await this.snapshotThread.close()
    this.leases.releaseAll()
    this.backupRun.close()
    await this.publisher.close()
  }

  private async scheduledRun (): Promise<void> {
    // Of all the processes sharing this destination, only the one holding the schedule lease runs the schedule.
    // It keeps the lease until it closes or dies; then the next process whose timer fires takes it over.
    if (!this.leases.tryLeadSchedule()) return
    // runAndReport() has already logged and recorded any failure; a scheduled failure must never reach the app.
    await this.now().catch(() => {})
  }

  /** `runOnStart` without a schedule: one run, by one of the processes sharing the database, which then lets go. */
  private async runOnceAtStart (): Promise<void> {
    await this.scheduledRun()
    // Held on, the lease would keep every other process from ever running its schedule.
    this.leases.releaseSchedule()
  }

  /** One run, with its outcome counted, logged and told to the app's callbacks. */
  private async runAndReport (force: boolean): Promise<BackupResult> {
    const startedAt = new Date()
    try {
      const result = await this.backupRun.run(force, startedAt)
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
      if (error.code === 'FST_SQLITE_BACKUP_CLOSED') {
        // Aborted because the app is shutting down: not a failure, and nothing for the app to act on.
        this.log.info('sqlite backup: the run in flight was aborted because the app is closing; the previous backups are untouched')
        throw error
      }
      this.counts.failed++
      this.lastError = { at: new Date(), code: error.code ?? 'UNKNOWN', message: error.message }
      this.log.error({ err: error }, 'sqlite backup failed')
      this.notify('onError', error)
      throw error
    }
  }

  /** Tracks a list/verify/restore call so that close() waits for it; refused once closing. */
  private track<T> (work: () => Promise<T>): Promise<T> {
    if (this.phase === 'closed') return Promise.reject(new FST_SQLITE_BACKUP_CLOSED())
    return this.operations.track(work)
  }
}
