import { Worker } from 'node:worker_threads'
import { join } from 'node:path'
import { once } from 'node:events'
import type { TaskName, TaskReply, TaskRequest } from './protocol'
import { TaskFailure } from './protocol'
import { FST_SQLITE_BACKUP_TIMEOUT, FST_SQLITE_BACKUP_CLOSED } from '../errors'

// How long a task asked to stop may take to return before its thread is terminated.
const ABORT_GRACE_MS = 2000

export interface WorkerTaskOptions {
  /** The time allowed, as configured (also what the timeout error reports). */
  timeout: number
  /** When several tasks share one `timeout`: the moment (ms since the epoch) by which this one must be done. */
  deadline?: number
  /** Aborts the task when the app closes. */
  signal: AbortSignal
}

/**
 * Runs one task in a new worker thread, so that SQLite's synchronous work never blocks the event loop.
 * Rejects with FST_SQLITE_BACKUP_TIMEOUT or FST_SQLITE_BACKUP_CLOSED when stopped, and with a TaskFailure when the
 * task itself fails. The thread is gone when the promise settles.
 */
export async function runInWorker<T> (task: TaskName, job: unknown, { timeout, deadline, signal }: WorkerTaskOptions): Promise<T> {
  if (signal.aborted) throw new FST_SQLITE_BACKUP_CLOSED()
  const request: TaskRequest = { task, job }
  // No inherited --require/--import preloads (APM agents, loaders): the task needs none, and they slow every start.
  const worker = new Worker(join(__dirname, 'entry.js'), { workerData: request, execArgv: [] })
  const exited = once(worker, 'exit')
  let stopReason: 'timeout' | 'closed' | undefined
  let graceTimer: NodeJS.Timeout | undefined
  const stop = (reason: 'timeout' | 'closed'): void => {
    if (stopReason) return
    stopReason = reason
    worker.postMessage({ type: 'abort' })
    graceTimer = setTimeout(() => worker.terminate(), ABORT_GRACE_MS)
  }
  const onAbort = (): void => stop('closed')
  signal.addEventListener('abort', onAbort, { once: true })
  const timeoutTimer = setTimeout(() => stop('timeout'), deadline === undefined ? timeout : Math.max(0, deadline - Date.now()))

  try {
    const reply = await new Promise<TaskReply>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
      worker.once('exit', (code) => reject(new TaskFailure(`the worker thread stopped unexpectedly (exit code ${code})`)))
    })
    if (reply.type === 'done') return reply.value as T
    if (reply.type === 'error') throw new TaskFailure(reply.message, reply.code)
    throw stopError(stopReason, timeout)
  } catch (err) {
    // A stop wins over whatever the interrupted task said on its way out.
    if (stopReason) throw stopError(stopReason, timeout)
    throw err
  } finally {
    clearTimeout(timeoutTimer)
    signal.removeEventListener('abort', onAbort)
    // The worker ends by itself once it has replied; wait for it so that no thread outlives the task.
    await exited
    clearTimeout(graceTimer)
  }
}

function stopError (reason: 'timeout' | 'closed' | undefined, timeout: number): Error {
  return reason === 'timeout' ? new FST_SQLITE_BACKUP_TIMEOUT(timeout, 'If a long write transaction holds the database, wait for it to end, or raise the "timeout" option') : new FST_SQLITE_BACKUP_CLOSED()
}
