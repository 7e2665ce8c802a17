import { join } from 'node:path'
import { readdir } from 'node:fs/promises'
import type { FastifyBaseLogger } from 'fastify'
import type { BackupMetadata, ContinuousStatus, SyncResult } from '../../types/index'
import type { ContinuousSettings } from '../options'
import type { Destination } from '../destinations/destination'
import type { SnapshotCopier, CopyInfo } from '../snapshot'
import { Lease } from '../lease'
import { RunQueue } from '../run-queue'
import { until } from '../operations'
import { removeFile } from '../durable-fs'
import { FST_SQLITE_BACKUP_SYNC_FAILED, FST_SQLITE_BACKUP_CLOSED } from '../errors'
import { FollowerThread } from './follower-thread'
import type { SnapshotContinuity } from './follower-protocol'
import { DestinationProgress } from './destination-progress'
import { findResumePoint, pruneChanges, type ResumePoint } from './stored-changes'

// How often the follower reads the WAL and moves its read lock on: the longest an app's own TRUNCATE checkpoint
// waits for it, and the precision of the commit times a point-in-time restore goes by.
const TICK_MS = 100
// The longest the destinations may take to tell where their changes end, when shipping starts.
const RESUME_TIMEOUT = 5000

export interface ShipperContext {
  databasePath: string
  settings: ContinuousSettings
  destinations: Destination[]
  /** Where segments are written before they are shipped (the staging directory). */
  spoolDirectory: string
  /** Names this database and its destinations (see leases.ts). */
  scope: string
  log: FastifyBaseLogger
  closing: AbortSignal
  /** A new chain started: its base snapshot is needed at once. Returns the run that takes it. */
  needBase: () => Promise<unknown>
}

export type BaseCopy = CopyInfo & { continuity?: SnapshotContinuity & { fromAt: number, pinnedAt: number } }

/**
 * Continuous backup of one database: the process holding the ship lease follows the WAL (in the follower's worker
 * thread) and ships what was committed to every destination, every `syncInterval` and on `sync()`.
 */
export class Shipper {
  private readonly lease: Lease
  private readonly progress: DestinationProgress[]
  private readonly queue = new RunQueue<SyncResult>(() => this.pass())
  private follower: FollowerThread | undefined
  private timer: NodeJS.Timeout | undefined
  private chain: string | undefined
  /** The current chain has no base yet; `baseRun` is the run asked to take it, while it runs. */
  private baseNeeded = false
  private baseRun: Promise<unknown> | undefined
  private walBytes = 0
  private closed = false
  private lastFailure: string | undefined
  private starting: Promise<void> | undefined
  /** Spool files cut and not yet stored everywhere. */
  private readonly spooled = new Set<string>()

  constructor (private readonly context: ShipperContext) {
    this.lease = new Lease(join(context.spoolDirectory, `.ship-${context.scope}.lock`))
    this.progress = context.destinations.map((destination) => new DestinationProgress(destination))
  }

  /** A base snapshot of the current chain has been asked for and is not published yet. */
  get awaitingBase (): boolean {
    return this.baseNeeded
  }

  /** Whether this process ships (it holds the ship lease). */
  get shipping (): boolean {
    return this.follower !== undefined
  }

  /** Starts following the WAL if no other process does; otherwise looks again at every pass. */
  async start (): Promise<void> {
    await this.tryToShip()
    this.arm()
  }

  /** Resolves once every commit made before the call is stored at every destination, with a base to replay it from. */
  async sync (): Promise<SyncResult> {
    if (this.closed) throw new FST_SQLITE_BACKUP_CLOSED()
    if (!this.shipping) await this.tryToShip()
    if (!this.shipping) throw new FST_SQLITE_BACKUP_SYNC_FAILED('every destination', 'another process sharing this database ships its changes (it holds the ship lease); call sync() there')
    const result = await this.queue.enqueue(false)
    // Stored is not yet restorable while the chain has no base: wait for it (asked for again if it failed).
    if (this.baseNeeded) await (this.baseRun ?? this.requestBase())
    return result
  }

  /** Stores what was committed up to now (no wait for a base, unlike sync()). */
  async flush (): Promise<void> {
    if (this.shipping) await this.queue.enqueue(false)
  }

  /** Starts a new chain now, and asks for its base snapshot. */
  async restartChain (reason: string): Promise<void> {
    const follower = this.follower
    if (follower === undefined) return
    this.newChain(await follower.restartChain(reason), reason)
  }

  /** The copy for a snapshot: in the follower's thread, which knows which commits it holds. */
  get copier (): SnapshotCopier<BaseCopy> | undefined {
    const follower = this.follower
    if (follower === undefined) return undefined
    return async (job, options) => await follower.snapshot(job, options) as BaseCopy
  }

  /** A base was published: its chain can be restored from it. */
  basePublished (metadata: BackupMetadata): void {
    const continuity = metadata.continuous
    if (continuity === undefined) return
    if (continuity.chain === this.chain) this.baseNeeded = false
    for (const item of this.progress) item.oldestBase ??= continuity.pinnedAt
  }

  status (index: number): ContinuousStatus {
    return this.progress[index].status(this.walBytes)
  }

  /** Deletes the changes no kept base needs (see stored-changes.ts). Called after retention deleted snapshots. */
  async prune (destination: Destination): Promise<void> {
    const oldestBase = await pruneChanges(destination, this.context.log)
    const item = this.progress.find((entry) => entry.destination === destination)
    if (item && oldestBase !== null) item.oldestBase = oldestBase
  }

  /** Ships what is left (within the caller's bound), then lets the WAL go. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearTimeout(this.timer)
    await this.starting?.catch(() => {})
    if (this.follower !== undefined && !this.context.closing.aborted) {
      await this.queue.enqueue(false).catch((err: Error) => {
        this.context.log.warn({ err }, 'sqlite backup: the last changes could not be shipped at close; they stay in the WAL and are shipped by the next process that follows it')
      })
    }
    await this.queue.stop(new FST_SQLITE_BACKUP_CLOSED())
    await this.follower?.close()
    this.follower = undefined
    this.lease.release()
    for (const item of this.progress) {
      for (const segment of item.queue) await removeFile(segment.path)
      item.queue = []
    }
  }

  /**
   * Passes start every `syncInterval`, counted from the start of the previous one, so that how long a pass takes
   * does not add to how old the changes can get. Never two at once: the next is armed when one ends.
   */
  private arm (delay = this.context.settings.syncInterval): void {
    if (this.closed) return
    this.timer = setTimeout(() => {
      const started = Date.now()
      const pass = this.shipping ? this.queue.enqueue(false) : this.tryToShip()
      // A failed pass is logged where it failed and retried at the next.
      pass.catch(() => {}).finally(() => this.arm(Math.max(0, this.context.settings.syncInterval - (Date.now() - started))))
    }, delay)
    this.timer.unref()
  }

  /** Takes the ship lease if it is free, and starts following the WAL from where the destinations stand. */
  private async tryToShip (): Promise<void> {
    // One attempt at a time: sync() and the timer may both ask.
    this.starting ??= this.startShipping().finally(() => { this.starting = undefined })
    await this.starting
  }

  private async startShipping (): Promise<void> {
    if (this.shipping || this.closed) return
    if (!this.lease.tryAcquire()) return
    const { log, databasePath, spoolDirectory, scope, settings } = this.context
    let follower: FollowerThread | undefined
    try {
      await this.removeLeftovers()
      follower = new FollowerThread({ databasePath, spoolDirectory, spoolPrefix: scope, walSizeLimit: settings.walSizeLimit }, TICK_MS, {
        onBreak: (reason, chain) => this.newChain(chain, reason),
        onFailure: (message, code) => {
          if (message === this.lastFailure) return
          this.lastFailure = message
          log.error({ code }, 'sqlite backup: reading the WAL failed: %s', message)
        }
      })
      const resume = await this.boundedResumePoint()
      const started = await follower.start(resume?.state).finally(() => resume?.release())
      if (this.closed) throw new FST_SQLITE_BACKUP_CLOSED()
      this.follower = follower
      this.chain = started.chain
      if (started.continued) {
        log.info({ chain: started.chain }, 'sqlite backup: continuous backup resumes where it stopped')
      } else {
        this.newChain(started.chain, started.reason === undefined ? undefined : `continuous backup cannot carry on the stored changes: ${started.reason}`)
      }
    } catch (err) {
      await follower?.close()
      this.lease.release()
      if (this.closed) return
      log.error({ err }, 'sqlite backup: continuous backup could not start')
      throw err
    }
  }

  /** A new chain: the first (no `reason`), or one after a break, which is worth a warning. */
  private newChain (chain: string, reason: string | undefined): void {
    this.chain = chain
    if (reason === undefined) this.context.log.info({ chain }, 'sqlite backup: continuous backup starts a chain of changes, with a base snapshot now')
    else this.context.log.warn({ chain, reason }, 'sqlite backup: %s; a new chain of changes starts, with a base snapshot now', reason)
    this.baseNeeded = true
    this.requestBase().catch(() => {})
  }

  /** The run that takes the current chain's base. If it fails, the next sync() (or scheduled run) asks again. */
  private requestBase (): Promise<unknown> {
    const chain = this.chain
    const run = this.context.needBase().then(() => {
      // The run was forced, so it published a base, of this chain unless it moved on meanwhile.
      if (this.chain === chain) this.baseNeeded = false
    }, (err: Error) => {
      this.context.log.error({ err, chain }, 'sqlite backup: the base snapshot of a new chain failed; changes are shipped but cannot be restored until a snapshot succeeds')
      throw err
    }).finally(() => {
      if (this.baseRun === run) this.baseRun = undefined
    })
    this.baseRun = run
    return run
  }

  /**
   * The resume point, or none (a new chain) when the destinations cannot tell within RESUME_TIMEOUT: a server that
   * never answers must hold neither the app's start nor the shipping of new changes.
   */
  private async boundedResumePoint (): Promise<ResumePoint | undefined> {
    const { destinations, spoolDirectory, scope, closing } = this.context
    const finding = findResumePoint(destinations, join(spoolDirectory, `.resume-${scope}-${process.pid}.seg`), closing)
    try {
      return await until(AbortSignal.any([AbortSignal.timeout(RESUME_TIMEOUT), this.context.closing]), finding)
    } catch (err) {
      // A download that arrives after all is not needed any more.
      finding.then((late) => late?.release(), () => {}).catch(() => {})
      this.context.log.warn({ err }, 'sqlite backup: could not read where the stored changes end; a new chain starts')
      return undefined
    }
  }

  /**
   * Removes what a shipping process that died left: its spool files, and temp files of segments being stored in
   * local destinations. Only under the ship lease: then no other process is writing them.
   */
  private async removeLeftovers (): Promise<void> {
    const { spoolDirectory, scope, log } = this.context
    const ours = [`.spool-${scope}-`, `.resume-${scope}-`]
    const spool = (await readdir(spoolDirectory).catch(() => [] as string[])).filter((name) => ours.some((prefix) => name.startsWith(prefix)))
    for (const name of spool) await removeFile(join(spoolDirectory, name))
    const stored: string[] = []
    for (const { destination } of this.progress) stored.push(...await destination.removeSegmentLeftovers())
    if (spool.length + stored.length > 0) log.info({ leftovers: [...spool, ...stored] }, 'sqlite backup: removed what an interrupted shipping of changes left')
  }

  /** Cuts what the follower read into a segment and stores every cut segment at every destination, in order. */
  private async pass (): Promise<SyncResult> {
    const started = Date.now()
    const follower = this.follower
    if (follower === undefined) throw new FST_SQLITE_BACKUP_SYNC_FAILED('every destination', 'this process does not ship this database\'s changes')
    const cut = await follower.cut()
    this.walBytes = cut.walBytes
    if (cut.segment !== undefined) {
      this.spooled.add(cut.segment.path)
      for (const item of this.progress) item.queue.push(cut.segment)
    }
    const failures = (await Promise.all(this.progress.map((item) => item.drain(this.context.closing, this.context.log)))).filter((failure) => failure !== undefined)
    await this.removeShipped()
    if (failures.length > 0) {
      const [first] = failures
      throw new FST_SQLITE_BACKUP_SYNC_FAILED(failures.map((failure) => failure.destination).join(', '), first.err.message, { cause: first.err })
    }
    const stored = this.progress[0].stored
    return { position: stored, durationMs: Date.now() - started }
  }

  /** Removes the spool files that every destination has stored. */
  private async removeShipped (): Promise<void> {
    const waiting = new Set(this.progress.flatMap((item) => item.queue.map((segment) => segment.path)))
    for (const path of this.spooled) {
      if (waiting.has(path)) continue
      await removeFile(path)
      this.spooled.delete(path)
    }
  }
}
