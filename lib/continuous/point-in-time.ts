// A restore that replays stored changes: the base snapshot and the segments as local files, then one worker task
// that copies, replays and checks, and one rename. Shared by the plugin and the command-line tool.
import type { Destination, LocalCopy } from '../destinations/destination'
import type { WorkerTaskOptions } from '../worker/task-thread'
import { restoreBackup, type Restored } from '../restore'
import { checksumOf } from '../record'
import type { RestorePlan } from './restore-plan'

export interface PointInTimeRequest {
  /** Absolute target path. */
  to: string
  force: boolean
  livePath?: string
  /** A fresh temp path for a download, in a directory of this process's (`name` keeps it readable). */
  downloadPath: (name: string) => string
}

/** Restores `plan` to `request.to`. Downloads (offsite) are removed whatever happens. */
export async function restorePlan (destination: Destination, plan: RestorePlan, request: PointInTimeRequest, options: WorkerTaskOptions): Promise<Restored> {
  const copies: LocalCopy[] = []
  try {
    const base = await destination.localCopy(plan.base, request.downloadPath(plan.base.id), options.signal)
    copies.push(base)
    for (const segment of plan.segments) {
      copies.push(await destination.segmentCopy(segment, request.downloadPath(`${segment.chain}-${segment.index}`), options.signal))
    }
    return await restoreBackup({
      id: plan.base.id,
      backupPath: base.path,
      expected: checksumOf(plan.base.metadata),
      to: request.to,
      force: request.force,
      livePath: request.livePath,
      replay: plan.replay && { segments: copies.slice(1).map((copy) => copy.path), range: plan.replay },
      destination: destination.name
    }, options)
  } finally {
    for (const copy of copies) await copy.release()
  }
}
