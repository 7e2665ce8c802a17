// Entry point of the worker threads: runs the one task it was started for and replies once.
import { parentPort, workerData } from 'node:worker_threads'
import type { TaskRequest, TaskReply, ShouldStop } from './protocol'
import { TaskAborted } from './protocol'
import { snapshotTask } from '../snapshot'
import { quickCheckTask } from './file-checks'
import { verifyBackupFile } from '../verify'
import { copyBackup } from '../restore'
import { proveChainTask } from '../continuous/chain-proof'
import { lowerPriority } from './priority'

const tasks: Record<TaskRequest['task'], (job: never, shouldStop: ShouldStop) => Promise<unknown>> = {
  snapshot: snapshotTask,
  'quick-check': quickCheckTask,
  verify: verifyBackupFile,
  copy: copyBackup,
  'prove-chain': proveChainTask
}

lowerPriority()

let aborted = false
parentPort!.on('message', (message: { type: string }) => {
  if (message.type === 'abort') aborted = true
})
// The port alone must not keep this thread alive: it ends as soon as the task has replied.
parentPort!.unref()

const { task, job } = workerData as TaskRequest
tasks[task](job as never, () => aborted).then(
  (value) => reply({ type: 'done', value }),
  (err: Error & { code?: unknown }) => reply(err instanceof TaskAborted
    ? { type: 'aborted' }
    : { type: 'error', message: err.message, code: typeof err.code === 'string' ? err.code : undefined })
)

function reply (message: TaskReply): void {
  parentPort!.postMessage(message)
}
