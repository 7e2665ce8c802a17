// One destination of continuous backup, and what of the changes it holds.
import type { FastifyBaseLogger } from 'fastify'
import type { BackupFailure, ContinuousStatus } from '../../types/index'
import type { Destination } from '../destinations/destination'
import type { CutSegment } from './follower'
import { segmentName } from './chain'

export class DestinationProgress {
  /** Cut segments not stored there yet, oldest first: stored strictly in order, so that a chain never has a hole. */
  queue: CutSegment[] = []
  stored: { chain: string, commit: number } | null = null
  lastStoredAt: number | null = null
  /** When the oldest kept base was pinned: where the restorable window begins. */
  oldestBase: number | null = null
  lastError: BackupFailure | null = null

  constructor (readonly destination: Destination) {}

  /** Stores the queued segments in order; stops at the first failure (retried at the next pass) and returns it. */
  async drain (signal: AbortSignal, log: FastifyBaseLogger): Promise<{ destination: string, err: Error } | undefined> {
    while (this.queue.length > 0) {
      const segment = this.queue[0]
      try {
        await this.destination.putSegment(segment.path, segmentName(segment.chain, segment.index, segment.firstAt!, segment.lastAt!), signal)
      } catch (err) {
        if (this.lastError === null) log.error({ err, destination: this.destination.name }, 'sqlite backup: storing changes failed; retrying at the next pass')
        this.lastError = { at: new Date(), code: (err as { code?: string }).code ?? 'UNKNOWN', message: (err as Error).message }
        return { destination: this.destination.name, err: err as Error }
      }
      this.queue.shift()
      this.stored = { chain: segment.chain, commit: segment.lastCommit }
      this.lastStoredAt = segment.lastAt!
      if (this.lastError !== null) log.info({ destination: this.destination.name }, 'sqlite backup: storing changes works again')
      this.lastError = null
    }
    return undefined
  }

  status (walBytes: number): ContinuousStatus {
    const oldest = this.queue[0]
    return {
      position: this.stored,
      lagMs: oldest?.firstAt === undefined ? 0 : Math.max(0, Date.now() - oldest.firstAt),
      walBytes,
      window: this.oldestBase !== null && this.lastStoredAt !== null && this.lastStoredAt >= this.oldestBase
        ? { from: new Date(this.oldestBase), to: new Date(this.lastStoredAt) }
        : null,
      lastError: this.lastError
    }
  }
}
