// What the main thread and the follower's worker thread say to each other.
import type { SnapshotJob } from '../snapshot'

export type FollowerRequest =
  | { id: number, type: 'start', resume: { path: string } | undefined }
  | { id: number, type: 'cut' }
  | { id: number, type: 'new-chain', reason: string }
  | { id: number, type: 'snapshot', job: SnapshotJob }
  | { id: number, type: 'close' }

export type FollowerMessage =
  | { type: 'reply', id: number, value: unknown }
  | { type: 'reply-error', id: number, message: string, code?: string }
  /** The chain broke and a new one started: it needs a base snapshot at once. */
  | { type: 'broke', reason: string, chain: string }
  /** A tick failed; the next one tries again. */
  | { type: 'failed', message: string, code?: string }

/** The commits of a chain a base snapshot holds: every one up to `from`, maybe some up to `to`, none after `to`. */
export interface SnapshotContinuity {
  chain: string
  from: number
  to: number
}
