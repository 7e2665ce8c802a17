// The check of a large WAL snapshot runs beside its copy instead of after it, where the machine has a CPU to spare.
// The snapshot thread holds the read transaction that pins the snapshot, so it checks the pinned snapshot itself
// (`PRAGMA quick_check` through that connection), while a helper thread of its own makes the raw copy: plain reads
// and writes on file descriptors, which any thread of the process can use. The copy is the pinned snapshot byte for
// byte (wal-snapshot.ts), so checking one is checking the other; at 1 GB the check no longer adds its 0.4 s or so
// to the backup.
// The two threads then keep two CPUs busy. With two CPUs in all, the app's threads share theirs with a backup
// thread, and run slower for it: measured here at 1 GB, the commits of a writer in another process took 1.9-3.1x
// their idle median (p99 1.0-4.4x) beside, 1.25-1.75x (p99 0.6-1.5x) with the copy and the check made one after
// the other in the snapshot thread, in 1.5 s instead of 1.1 s. So below three CPUs they are made one after the other.
// Small snapshots are checked after the copy, as before: their check takes milliseconds, less than handing the
// copy to another thread.
import { availableParallelism } from 'node:os'
import type Database from 'better-sqlite3'
import type { Checksum } from './record'
import { TaskThread } from './worker/task-thread'
import { TaskAborted, TaskFailure, type ShouldStop } from './worker/protocol'
import { checkConnection } from './worker/file-checks'
import { copyWalSnapshot, RawCopyUnproven, type RawCopyJob } from './wal-snapshot'

/** From this size on, the check of a raw copy runs beside it, or else through the pinned connection after it. */
export const CHECK_BESIDE_COPY_MIN_BYTES = 32 * 1024 * 1024
/** The check runs beside the copy on a machine with this many CPUs or more: one is left to the app. */
export const CHECK_BESIDE_COPY_MIN_CPUS = 3
// How often a stop is looked for while the helper copies (the snapshot thread is otherwise idle then).
const STOP_POLL_MS = 20
// The helper's task has no deadline of its own: the snapshot task's (enforced by the main thread) bounds both.
const NO_TIMEOUT_MS = 2 ** 31 - 1

// Started at the first large snapshot and kept, like the snapshot thread, until that thread ends (endCopyHelper).
let helper: TaskThread | undefined

export interface CheckedRawCopy {
  checksum: Checksum
  /** What quick_check found in the pinned snapshot: nothing when it is sound. */
  problems: string[]
  /** When the pinned snapshot was checked: beside its copy (in two threads), or after it (in one). */
  checked: 'pinned-beside-copy' | 'pinned-after-copy'
}

/** Whether a machine with `cpus` CPUs (this process's, by default) checks a large copy beside it, in two threads. */
export function checksBesideCopy (cpus = availableParallelism()): boolean {
  return cpus >= CHECK_BESIDE_COPY_MIN_CPUS
}

/**
 * Copies the snapshot that `source`'s read transaction pins (as copyWalSnapshot does) and checks it through
 * `source`: beside each other where `cpus` (the CPUs this process may use) leaves the app one, one after the other
 * in this thread otherwise. Throws as copyWhileChecking does.
 */
export async function copyAndCheck (source: Database.Database, job: RawCopyJob, shouldStop: ShouldStop, cpus = availableParallelism()): Promise<CheckedRawCopy> {
  if (checksBesideCopy(cpus)) return await copyWhileChecking(source, job, shouldStop)
  const checksum = await copyWalSnapshot(job, shouldStop)
  if (shouldStop()) throw new TaskAborted()
  return { checksum, problems: checkConnection(source, 'quick_check'), checked: 'pinned-after-copy' }
}

/**
 * Copies the snapshot that `source`'s read transaction pins (as copyWalSnapshot does) in the helper thread while
 * this thread runs quick_check on it. Throws RawCopyUnproven as the copy does, TaskAborted when asked to stop; an
 * error of the check (SQLITE_CORRUPT...) is thrown once the copy has stopped.
 */
export async function copyWhileChecking (source: Database.Database, job: RawCopyJob, shouldStop: ShouldStop): Promise<CheckedRawCopy> {
  helper ??= new TaskThread()
  const stop = new AbortController()
  // Sent to the helper at once (it is idle: one snapshot at a time), so that it copies while this thread checks.
  const copied = helper.run<Checksum>('raw-copy', job, { timeout: NO_TIMEOUT_MS, signal: stop.signal })
  // Settled below in every case; until then a rejection is not an unhandled one.
  copied.catch(() => {})
  let problems: string[]
  try {
    problems = checkConnection(source, 'quick_check')
  } catch (err) {
    stop.abort()
    await copied.catch(() => {})
    throw err
  }
  const poll = setInterval(() => { if (shouldStop()) stop.abort() }, STOP_POLL_MS)
  try {
    if (shouldStop()) stop.abort()
    return { checksum: await copied, problems, checked: 'pinned-beside-copy' }
  } catch (err) {
    if (stop.signal.aborted) throw new TaskAborted()
    if (err instanceof TaskFailure && err.code === RawCopyUnproven.CODE) throw new RawCopyUnproven(err.message)
    throw err
  } finally {
    clearInterval(poll)
  }
}

/** Ends the helper thread, if one was started: called when the snapshot thread itself ends. */
export async function endCopyHelper (): Promise<void> {
  const ending = helper
  helper = undefined
  await ending?.close()
}
