import { join } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import { Lease } from './lease'
import { FST_SQLITE_BACKUP_CLOSED, FST_SQLITE_BACKUP_TIMEOUT, FST_SQLITE_BACKUP_PUBLISH_FAILED } from './errors'

/**
 * The leases that processes sharing a destination (cluster workers, PM2 instances) take turns with, kept in the
 * staging directory: the schedule lease, held by the one process that runs the schedule until it closes or dies,
 * and the run lease, held for the length of one run so that two snapshots never overlap.
 */
export class Leases {
  private readonly schedule: Lease
  private readonly run: Lease

  constructor (private readonly directory: string, private readonly log: FastifyBaseLogger) {
    this.schedule = new Lease(join(directory, '.schedule.lock'))
    this.run = new Lease(join(directory, '.run.lock'))
  }

  /**
   * True when this process runs the schedule: it holds the schedule lease already, or takes it now because its
   * holder closed or died. Never waits.
   */
  tryLeadSchedule (): boolean {
    const wasHeld = this.schedule.held
    try {
      if (this.schedule.tryAcquire()) {
        if (!wasHeld) this.log.debug('sqlite backup: this process now runs the backup schedule for this destination')
        return true
      }
      this.log.debug('sqlite backup: another process runs the backup schedule for this destination; skipping')
    } catch (err) {
      this.log.error({ err }, 'sqlite backup: cannot open the schedule lease; skipping this scheduled run')
    }
    return false
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
    this.schedule.release()
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
      if (waiting.signal.aborted) throw new FST_SQLITE_BACKUP_TIMEOUT(timeout)
      throw new FST_SQLITE_BACKUP_PUBLISH_FAILED(this.directory, (err as Error).message, { cause: err })
    } finally {
      clearTimeout(timer)
      closing.removeEventListener('abort', onClose)
    }
  }
}
