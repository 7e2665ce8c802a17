import { Worker } from 'node:worker_threads'
import { join } from 'node:path'
import { once } from 'node:events'
import type { TaskName, TaskReply } from './protocol'
import { TaskFailure } from './protocol'
import { FST_SQLITE_BACKUP_TIMEOUT, FST_SQLITE_BACKUP_CLOSED } from '../errors'

// How long a task asked to stop may take to return before its thread is terminated.
const ABORT_GRACE_MS = 2000
// How long an idle thread asked to end may take to exit by itself before it is terminated.
const CLOSE_GRACE_MS = 1000

export interface WorkerTaskOptions {
  /** The time allowed, as configured (also what the timeout error reports). */
  timeout: number
  /** When several tasks share one `timeout`: the moment (ms since the epoch) by which this one must be done. */
  deadline?: number
  /** Aborts the task when the app closes. */
  signal: AbortSignal
}

/**
 * A worker thread that runs tasks, so that SQLite's synchronous work never blocks the event loop. Started at the
 * first task and kept for the next ones (starting a thread costs tens of milliseconds, more than a small database's
 * whole backup), until close(). An idle thread does not keep the process alive. A task that does not stop within
 * ABORT_GRACE_MS of being asked takes its thread with it; the next task starts another.
 *
 * Tasks run one at a time, unless `concurrent`: for tasks that wait on the network rather than hold the thread
 * (uploads), so that a segment of continuous backup is not queued behind a large backup's upload.
 */
export class TaskThread {
  private worker: Worker | undefined
  private nextId = 0
  private queue: Promise<unknown> = Promise.resolve()
  /** Tasks run() was given that have not settled yet (the one running included). */
  private pending = 0
  private running = 0

  constructor (private readonly options: { concurrent?: boolean } = {}) {}

  /**
   * Runs one task (after any task already running, unless concurrent). Rejects with FST_SQLITE_BACKUP_TIMEOUT or
   * FST_SQLITE_BACKUP_CLOSED when stopped, and with a TaskFailure when the task itself fails.
   *
   * A task for an idle thread is sent before run() returns, not a tick later: the caller may block its own thread
   * right after, and the task runs meanwhile (check-beside-copy.ts checks while its helper copies).
   */
  async run<T> (task: TaskName, job: unknown, options: WorkerTaskOptions): Promise<T> {
    if (this.options.concurrent === true) return await this.runNow<T>(task, job, options)
    const turn = this.pending === 0 ? this.runNow<T>(task, job, options) : this.queue.then(() => this.runNow<T>(task, job, options))
    this.pending++
    this.queue = turn.catch(() => {}).finally(() => { this.pending-- })
    return await turn
  }

  /** Starts the thread now, if it is not running, so that the next task does not wait for it to start. */
  start (): void {
    this.thread()
  }

  /**
   * Ends the thread: asked to exit by itself (so that it leaves as a finished thread does, its coverage data or
   * anything else flushed at exit included), terminated if it has not within CLOSE_GRACE_MS. Call it once no task
   * runs.
   */
  async close (): Promise<void> {
    const worker = this.worker
    this.worker = undefined
    if (worker === undefined) return
    const exited = once(worker, 'exit')
    // Held until it has exited: an idle thread is unref'd, and the wait must keep the process alive.
    worker.ref()
    worker.postMessage({ type: 'close' })
    const timer = setTimeout(() => { worker.terminate().catch(() => {}) }, CLOSE_GRACE_MS)
    await exited
    clearTimeout(timer)
  }

  private thread (): Worker {
    if (this.worker !== undefined) return this.worker
    // No inherited --require/--import preloads (APM agents, loaders): the tasks need none, and they slow the start.
    const worker = new Worker(join(__dirname, 'entry.js'), { execArgv: [] })
    worker.unref()
    worker.once('exit', () => { if (this.worker === worker) this.worker = undefined })
    this.worker = worker
    return worker
  }

  private async runNow<T> (task: TaskName, job: unknown, { timeout, deadline, signal }: WorkerTaskOptions): Promise<T> {
    if (signal.aborted) throw new FST_SQLITE_BACKUP_CLOSED()
    const worker = this.thread()
    const id = ++this.nextId
    let stopReason: 'timeout' | 'closed' | undefined
    let graceTimer: NodeJS.Timeout | undefined
    const stop = (reason: 'timeout' | 'closed'): void => {
      if (stopReason) return
      stopReason = reason
      worker.postMessage({ type: 'abort', id })
      graceTimer = setTimeout(() => { worker.terminate().catch(() => {}) }, ABORT_GRACE_MS)
    }
    const onAbort = (): void => stop('closed')
    signal.addEventListener('abort', onAbort, { once: true })
    const timeoutTimer = setTimeout(() => stop('timeout'), deadline === undefined ? timeout : Math.max(0, deadline - Date.now()))
    // While a task runs, the thread keeps the process alive like any work in progress.
    this.running++
    worker.ref()
    let onMessage: ((message: TaskReply & { id: number }) => void) | undefined
    let onError: ((err: Error) => void) | undefined
    let onExit: ((code: number) => void) | undefined
    try {
      const reply = await new Promise<TaskReply>((resolve, reject) => {
        onMessage = (message) => { if (message.id === id) resolve(message) }
        onError = reject
        onExit = (code) => reject(new TaskFailure(`the worker thread stopped unexpectedly (exit code ${code})`))
        worker.on('message', onMessage)
        worker.once('error', onError)
        worker.once('exit', onExit)
        worker.postMessage({ type: 'task', id, task, job })
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
      clearTimeout(graceTimer)
      signal.removeEventListener('abort', onAbort)
      if (onMessage) worker.off('message', onMessage)
      if (onError) worker.off('error', onError)
      if (onExit) worker.off('exit', onExit)
      if (--this.running === 0) worker.unref()
    }
  }
}

/** Runs one task in a thread of its own, gone when the promise settles. */
export async function runInWorker<T> (task: TaskName, job: unknown, options: WorkerTaskOptions): Promise<T> {
  const thread = new TaskThread()
  try {
    return await thread.run<T>(task, job, options)
  } finally {
    await thread.close()
  }
}

function stopError (reason: 'timeout' | 'closed' | undefined, timeout: number): Error {
  return reason === 'timeout' ? new FST_SQLITE_BACKUP_TIMEOUT(timeout, 'If a long write transaction holds the database, wait for it to end, or raise the "timeout" option') : new FST_SQLITE_BACKUP_CLOSED()
}
