// Entry point of the worker threads: runs the tasks it is sent, one at a time, each replying once with its id.
import { parentPort } from 'node:worker_threads'
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

const aborted = new Set<number>()
parentPort!.on('message', (message: { type: 'task', id: number } & TaskRequest | { type: 'abort', id: number } | { type: 'close' }) => {
  if (message.type === 'close') {
    // Nothing else keeps the thread alive: it exits once the port is closed.
    parentPort!.close()
    return
  }
  if (message.type === 'abort') {
    aborted.add(message.id)
    return
  }
  const { id, task, job } = message
  tasks[task](job as never, () => aborted.has(id)).then(
    (value) => reply({ type: 'done', value }, id),
    (err: Error & { code?: unknown }) => reply(err instanceof TaskAborted
      ? { type: 'aborted' }
      : { type: 'error', message: err.message, code: typeof err.code === 'string' ? err.code : undefined }, id)
  )
})

function reply (message: TaskReply, id: number): void {
  aborted.delete(id)
  parentPort!.postMessage({ ...message, id })
}
