import { join, dirname, basename } from 'node:path'
import { realpathSync } from 'node:fs'
import { createHash } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { Lease } from './lease'
import { FST_SQLITE_BACKUP_CLOSED, FST_SQLITE_BACKUP_TIMEOUT, FST_SQLITE_BACKUP_PUBLISH_FAILED } from './errors'

/** Who runs the schedule: this process, another process sharing the database and destinations, or nobody. */
export type ScheduleRole = 'this-process' | 'another-process' | 'none'

/**
 * The leases that processes backing up one database to the same destinations (cluster workers, PM2 instances)
 * take turns with: the schedule lease, held by the one process that runs the schedule until it closes or dies, and
 * the run lease, held for the length of one run so that two snapshots never overlap. Their files sit in the staging
 * directory and are named after what they protect (the database and its destinations), so that unrelated apps
 * sharing a staging directory never hold each other up.
 */
export class Leases {
  private readonly schedule: Lease
  private readonly run: Lease
  private role: ScheduleRole = 'none'

  constructor (private readonly directory: string, scope: string, private readonly log: FastifyBaseLogger) {
    this.schedule = new Lease(join(directory, `.schedule-${scope}.lock`))
    this.run = new Lease(join(directory, `.run-${scope}.lock`))
  }

  /** What the last look at the schedule lease found. */
  get scheduleRole (): ScheduleRole {
    return this.role
  }

  /**
   * True when this process runs the schedule: it holds the schedule lease already, or takes it now because its
   * holder closed or died. Never waits. A change of role is logged at info: a process that does not back up on its
   * schedule must never be a mystery.
   */
  tryLeadSchedule (): boolean {
    let role: ScheduleRole
    try {
      role = this.schedule.tryAcquire() ? 'this-process' : 'another-process'
    } catch (err) {
      this.log.error({ err }, 'sqlite backup: cannot open the schedule lease; skipping this scheduled run')
      return false
    }
    if (role !== this.role) {
      if (role === 'this-process') this.log.info('sqlite backup: this process runs the backup schedule of this database')
      else this.log.info('sqlite backup: another process runs the backup schedule of this database; this one backs up when now() is called, and takes the schedule over if that process stops')
    } else if (role === 'another-process') {
      this.log.debug('sqlite backup: another process runs the backup schedule of this database; skipping')
    }
    this.role = role
    return role === 'this-process'
  }

  /** Gives the schedule up (a one-off run at start holds it only for that run). */
  releaseSchedule (): void {
    this.schedule.release()
    this.role = 'none'
  }

  /** Runs `work` holding the run lease, waited for up to `timeout` ms; `closing` stops the wait. */
  async whileRunning<T> (timeout: number, closing: AbortSignal, work: () => Promise<T>): Promise<T> {
    await this.acquireRun(timeout, closing)
    try {
      return await work()
    } finally {
      this.run.release()
    }
  }

  releaseAll (): void {
    this.releaseSchedule()
    this.run.release()
  }

  private async acquireRun (timeout: number, closing: AbortSignal): Promise<void> {
    const waiting = new AbortController()
    const timer = setTimeout(() => waiting.abort(), timeout)
    const onClose = (): void => waiting.abort()
    closing.addEventListener('abort', onClose, { once: true })
    try {
      await this.run.acquire(waiting.signal)
    } catch (err) {
      if (closing.aborted) throw new FST_SQLITE_BACKUP_CLOSED()
      if (waiting.signal.aborted) throw new FST_SQLITE_BACKUP_TIMEOUT(timeout, 'It waited all that time for another process\'s backup of this database to end (the run lease): look for a process whose backups take that long, or raise the "timeout" option')
      throw new FST_SQLITE_BACKUP_PUBLISH_FAILED(this.directory, (err as Error).message, { cause: err })
    } finally {
      clearTimeout(timer)
      closing.removeEventListener('abort', onClose)
    }
  }
}

/**
 * A short name for what the leases protect: the database (by its real path, so that a symlinked path names the
 * same file) and its destinations. Every process configured alike computes the same name.
 */
export function leaseScope (databasePath: string, destinationNames: string[]): string {
  const database = realDatabasePath(databasePath)
  return createHash('sha256').update(JSON.stringify([database, [...destinationNames].sort()])).digest('hex').slice(0, 16)
}

function realDatabasePath (path: string): string {
  try {
    return realpathSync(path)
  } catch {
    // Not there yet (restoreIfMissing): its directory decides where it will be.
    try {
      return join(realpathSync(dirname(path)), basename(path))
    } catch {
      return path
    }
  }
}
