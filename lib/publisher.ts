import type { FastifyBaseLogger } from 'fastify'
import type { BackupMetadata, BackupFailure, BackupInfo, DestinationStatus } from '../types/index'
import type { RetentionPolicy } from './retention'
import type { Destination } from './destinations/destination'
import type { LocalDestination } from './destinations/local'
import { createDestination, type DestinationSettings } from './destinations/create'
import type { BackupsInUse } from './in-use'
import type { Notify } from './hooks'
import { backupsToDelete } from './retention'
import { withRetry } from './retry'
import { until } from './operations'
import { removeTemp } from './snapshot'
import { isPluginError, isTransportError, FST_SQLITE_BACKUP_PUBLISH_FAILED, FST_SQLITE_BACKUP_INVALID_DESTINATION } from './errors'

// The longest a destination's check at registration may take before it counts as unreachable.
const PREPARE_TIMEOUT = 5000
// Waits between tries of an upload: up to 1 s, 2 s, 4 s... (full jitter), never more than 30 s.
const RETRY_BASE_DELAY = 1000
const RETRY_MAX_DELAY = 30_000

/** One destination and what this process knows of it. */
interface TrackedDestination {
  destination: Destination
  attempts: number
  lastSuccessAt: Date | null
  lastError: BackupFailure | null
  lastBackupId: string | null
  /** It missed the newest backup: the next run publishes a new one even if nothing changed. */
  lagging: boolean
  kept: Kept
}

type Kept = { count: number, bytes: number }

export interface PublisherContext {
  /** Names the runs of this database and destinations (see leases.ts), and so their temp files. */
  scope: string
  keep: RetentionPolicy
  inUse: BackupsInUse
  log: FastifyBaseLogger
  notify: Notify
  /** Aborted when the app closes: stops uploads and the waits between retries. */
  closing: AbortSignal
  /** The `maxRate` option: bytes per second written to and deleted from local disks. */
  maxRate: number | undefined
}

export interface Published {
  /** The record as the first destination that took it stored it. */
  stored: BackupMetadata
  /** Where `stored` is. */
  storedAt: Destination
  /** Every destination that took it, for retention. */
  destinations: Destination[]
}

/**
 * Publishes each backup to every destination: to the first local directory by a rename, to the others by a copy,
 * in parallel, each retried on its own; keeps each destination's status; applies retention per destination.
 */
export class Publisher {
  private readonly tracked: TrackedDestination[]
  /** The first local destination: snapshots are taken in it and published there by a rename. */
  readonly primary: LocalDestination | undefined

  constructor (settings: DestinationSettings[], private readonly context: PublisherContext) {
    this.tracked = settings.map((item) => ({
      destination: createDestination(item, context.scope, { maxRate: context.maxRate, signal: context.closing }),
      attempts: item.type === 's3' ? item.attempts : 1,
      lastSuccessAt: null,
      lastError: null,
      lastBackupId: null,
      lagging: false,
      kept: { count: 0, bytes: 0 }
    }))
    this.primary = this.tracked.find(({ destination }) => destination.type === 'local')?.destination as LocalDestination | undefined
  }

  get destinations (): Destination[] {
    return this.tracked.map(({ destination }) => destination)
  }

  /** A destination missed the newest backup: the next run must publish, even if nothing changed. */
  get lagging (): boolean {
    return this.tracked.some((item) => item.lagging)
  }

  /**
   * Checks every destination but the primary (created with the staging directory). A local directory that
   * cannot be used, wrong credentials or a missing bucket fail the registration; a store that cannot be reached
   * is only logged, so that an outage of backup storage never keeps the app from starting.
   */
  async prepare (signal: AbortSignal): Promise<void> {
    const bounded = boundedCheck(signal)
    await Promise.all(this.tracked.map(async ({ destination }) => {
      if (destination === this.primary) return
      try {
        await destination.prepare(bounded)
      } catch (err) {
        if (destination.type === 'local') throw new FST_SQLITE_BACKUP_INVALID_DESTINATION(destination.name, (err as Error).message, { cause: err })
        // Ours (credentials refused, no bucket, keys that do not match) is a mistake in the setup: no retry fixes it.
        if (isPluginError(err) && !isTransportError(err)) throw err
        this.context.log.warn({ err, destination: destination.name }, 'sqlite backup: cannot reach %s at startup; backups to it will be retried', destination.name)
      }
    }))
  }

  /**
   * At start: learns what each destination holds, and removes what interrupted uploads left offsite (judged by age,
   * so it needs no lease); returns the newest record of the first destination.
   */
  async load (signal: AbortSignal): Promise<BackupMetadata | null> {
    const bounded = boundedCheck(signal)
    let newest: BackupMetadata | null = null
    await Promise.all(this.tracked.map(async (item, index) => {
      try {
        // Offsite, within a few seconds: onReady runs within Fastify's pluginTimeout, and storage may be away.
        const backups = item.destination.type === 'local'
          ? await item.destination.list()
          : await until(bounded, (async () => {
            await this.removeLeftovers(item.destination)
            return await item.destination.list()
          })())
        item.kept = keptOf(backups)
        item.lastBackupId = backups[0]?.id ?? null
        if (index === 0) newest = backups.find((backup) => backup.metadata !== null)?.metadata ?? null
      } catch (err) {
        // A local directory that cannot be read is a broken setup; an offsite store may just be away for now.
        if (item.destination.type === 'local') throw err
        this.context.log.warn({ err, destination: item.destination.name }, 'sqlite backup: cannot list %s at startup; backups to it will be retried', item.destination.name)
      }
    }))
    return newest
  }

  /** Closes the destinations' connections and threads. */
  async close (): Promise<void> {
    await Promise.all(this.tracked.map(({ destination }) => destination.close()))
  }

  /** Holding the run lease: removes what interrupted runs left in the local directories (and in `staging`). */
  async removeLocalLeftovers (staging: LocalDestination): Promise<void> {
    const local = this.tracked.map(({ destination }) => destination).filter((destination) => destination.type === 'local')
    for (const destination of new Set([staging, ...local])) await this.removeLeftovers(destination)
  }

  private async removeLeftovers (destination: Destination): Promise<void> {
    const leftovers = await destination.removeLeftovers()
    if (leftovers.length > 0) this.context.log.info({ leftovers, destination: destination.name }, 'sqlite backup: removed files left by an interrupted backup')
  }

  /** The newest record in the first destination; when that is offsite and away, `known` (what this process last knew). */
  async newestRecord (known: BackupMetadata | null): Promise<BackupMetadata | null> {
    const first = this.tracked[0].destination
    try {
      return (await first.list()).find((backup) => backup.metadata !== null)?.metadata ?? null
    } catch (err) {
      if (first.type === 'local') throw err
      return known
    }
  }

  /**
   * Publishes the finished snapshot at `tempPath`: first to the primary directory by a rename, then `afterPrimary`
   * (the drill, whose result the other destinations then get in their first record), then to every other
   * destination. Fails only when no destination took it; each one that missed it is reported and caught up later.
   */
  async publish (tempPath: string, metadata: BackupMetadata, afterPrimary: (source: string) => Promise<void>): Promise<Published> {
    let source = tempPath
    const records = new Map<TrackedDestination, BackupMetadata>()
    const primary = this.tracked.find(({ destination }) => destination === this.primary)
    try {
      if (this.primary && primary) {
        try {
          source = await this.primary.publish(tempPath, metadata)
        } catch (err) {
          const error = new FST_SQLITE_BACKUP_PUBLISH_FAILED(this.primary.directory, (err as Error).message, { cause: err })
          recordFailure(primary, error)
          throw error
        }
        recordSuccess(primary, metadata)
        records.set(primary, metadata)
      }
      await afterPrimary(source)
      const others = this.tracked.filter((item) => item !== primary)
      const outcomes = await Promise.all(others.map((item) => this.putWithRetry(item, source, metadata)))
      const failures: Array<[TrackedDestination, Error]> = []
      others.forEach((item, index) => {
        const outcome = outcomes[index]
        if (outcome instanceof Error) failures.push([item, outcome])
        else records.set(item, outcome)
      })
      // Nowhere: the run failed, and says so once. Somewhere: each destination that missed it is reported.
      if (records.size === 0) throw failures[0][1]
      for (const [{ destination }, error] of failures) {
        this.context.log.error({ err: error, destination: destination.name }, 'sqlite backup: could not publish to %s; the other destinations have the backup, and the next run publishes a new one there', destination.name)
        this.context.notify('onError', error)
      }
    } finally {
      if (!this.primary) await removeTemp(tempPath, { maxRate: this.context.maxRate, signal: this.context.closing })
    }
    const [first] = this.tracked
    const [storedAt, stored] = records.has(first) ? [first, records.get(first)!] : [...records][0]
    return { stored, storedAt: storedAt.destination, destinations: [...records.keys()].map(({ destination }) => destination) }
  }

  /** Deletes what the retention policy no longer keeps, only ever after a new backup was published. Logged, not thrown. */
  async applyRetention (destinations: Destination[]): Promise<void> {
    for (const destination of destinations) {
      const item = this.tracked.find((tracked) => tracked.destination === destination)!
      try {
        const backups = await destination.list()
        const doomed = backupsToDelete(backups, this.context.keep).filter((id) => !this.context.inUse.has(id))
        const deleted = new Set<string>()
        for (const id of doomed) {
          // The app is closing: close() waits for no deletion; the next run applies the policy.
          if (this.context.closing.aborted) break
          await destination.remove(id)
          deleted.add(id)
          this.context.log.debug({ backup: { id }, destination: destination.name }, 'sqlite backup deleted by retention')
        }
        // What stays is what was listed minus what was deleted: no second listing (a request per record offsite).
        item.kept = keptOf(backups.filter((backup) => !deleted.has(backup.id)))
      } catch (err) {
        if (this.context.closing.aborted) {
          this.context.log.info({ destination: destination.name }, 'sqlite backup: retention was interrupted by close; the next backup finishes it')
          continue
        }
        this.context.log.error({ err, destination: destination.name }, 'sqlite backup: could not delete old backups; they will be retried after the next backup')
      }
    }
  }

  status (): DestinationStatus[] {
    return this.tracked.map((item): DestinationStatus => ({
      name: item.destination.name,
      type: item.destination.type,
      lastSuccessAt: item.lastSuccessAt,
      lastError: item.lastError,
      lastBackupId: item.lastBackupId,
      kept: { ...item.kept }
    }))
  }

  /** What the first destination holds after the last retention pass (or at start). */
  get keptInFirst (): Kept {
    return { ...this.tracked[0].kept }
  }

  /** Publishes to one destination, retrying what may pass (network, 5xx) with backoff; a failure stays with it. */
  private async putWithRetry (item: TrackedDestination, source: string, metadata: BackupMetadata): Promise<BackupMetadata | Error> {
    const { destination } = item
    const { closing, log } = this.context
    try {
      const record = await withRetry(() => destination.put(source, metadata, closing), {
        attempts: item.attempts,
        baseDelay: RETRY_BASE_DELAY,
        maxDelay: RETRY_MAX_DELAY,
        signal: closing,
        retryable: (err) => destination.isTransient(err),
        onRetry: (err, attempt, delay) => log.warn({ err, destination: destination.name, attempt, delay }, 'sqlite backup: publishing to %s failed; retrying in %d ms', destination.name, delay)
      })
      recordSuccess(item, record)
      return record
    } catch (err) {
      // A mistake in the setup (credentials, keys) keeps its own code; anything else is a failure to publish.
      const error = isPluginError(err) && !isTransportError(err) ? err : new FST_SQLITE_BACKUP_PUBLISH_FAILED(destination.name, (err as Error).message, { cause: err })
      recordFailure(item, error)
      return error
    }
  }
}

function recordSuccess (item: TrackedDestination, metadata: BackupMetadata): void {
  item.lastSuccessAt = new Date()
  item.lastBackupId = metadata.id
  item.lastError = null
  item.lagging = false
}

function recordFailure (item: TrackedDestination, error: Error & { code?: string }): void {
  item.lastError = { at: new Date(), code: error.code ?? 'UNKNOWN', message: error.message }
  item.lagging = true
}

/** `signal`, or a few seconds at most: a check of storage at start-up must not hold the app's boot. */
function boundedCheck (signal: AbortSignal): AbortSignal {
  return AbortSignal.any([signal, AbortSignal.timeout(PREPARE_TIMEOUT)])
}

function keptOf (backups: BackupInfo[]): Kept {
  return { count: backups.length, bytes: backups.reduce((sum, backup) => sum + (backup.metadata?.bytes ?? 0), 0) }
}
