// Entry point of the worker threads: runs the tasks it is sent, one at a time, each replying once with its id.
import { parentPort } from 'node:worker_threads'
import type { TaskRequest, TaskReply, ShouldStop } from './protocol'
import { TaskAborted } from './protocol'
import { snapshotTask } from '../snapshot'
import { copyWalSnapshot } from '../wal-snapshot'
import { endCopyHelper } from '../check-beside-copy'
import { quickCheckTask } from './file-checks'
import { verifyBackupFile } from '../verify'
import { copyBackup } from '../restore'
import { proveChainTask } from '../continuous/chain-proof'
import { lowerPriority } from './priority'

/** A task polls shouldStop() between synchronous steps; one that waits on the network listens to the signal. */
type Task = (job: never, shouldStop: ShouldStop, signal: AbortSignal) => Promise<unknown>

const tasks: Record<TaskRequest['task'], Task> = {
  snapshot: snapshotTask,
  // Run by the snapshot thread's helper (check-beside-copy.ts).
  'raw-copy': copyWalSnapshot,
  'quick-check': quickCheckTask,
  verify: verifyBackupFile,
  copy: copyBackup,
  'prove-chain': proveChainTask,
  // The AWS SDK is an optional dependency, loaded only by a thread that uploads.
  upload: async (job, shouldStop, signal) => await (require('../destinations/s3-upload') as typeof import('../destinations/s3-upload')).uploadTask(job, shouldStop, signal)
}

lowerPriority()

const running = new Map<number, AbortController>()
parentPort!.on('message', (message: { type: 'task', id: number } & TaskRequest | { type: 'abort', id: number } | { type: 'close' }) => {
  if (message.type === 'close') {
    // Nothing else keeps the thread alive: it exits once its helper has ended (a helper that failed on its way out
    // has ended all the same) and the port is closed.
    const closePort = (): void => { parentPort!.close() }
    endCopyHelper().then(closePort, closePort)
    return
  }
  if (message.type === 'abort') {
    running.get(message.id)?.abort()
    return
  }
  const { id, task, job } = message
  const stop = new AbortController()
  running.set(id, stop)
  tasks[task](job as never, () => stop.signal.aborted, stop.signal).then(
    (value) => reply({ type: 'done', value }, id),
    (err: Error & { code?: unknown }) => reply(err instanceof TaskAborted
      ? { type: 'aborted' }
      : { type: 'error', message: err.message, code: typeof err.code === 'string' ? err.code : undefined }, id)
  )
})

function reply (message: TaskReply, id: number): void {
  running.delete(id)
  parentPort!.postMessage({ ...message, id })
}
