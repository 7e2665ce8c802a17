import { Worker } from 'node:worker_threads'
import { join } from 'node:path'
import { once } from 'node:events'
import type { SnapshotJob, CopyInfo } from '../snapshot'
import type { WorkerTaskOptions } from '../worker/task-thread'
import { TaskFailure } from '../worker/protocol'
import { FST_SQLITE_BACKUP_CLOSED, FST_SQLITE_BACKUP_TIMEOUT } from '../errors'
import type { FollowerSettings, FollowStart, CutSegment } from './follower'
import type { FollowerRequest, FollowerMessage, SnapshotContinuity } from './follower-protocol'
import type { ChainState } from './chain'

export interface CutResult {
  segment: CutSegment | undefined
  chain: ChainState
  walBytes: number
}

export interface FollowerEvents {
  /** The chain broke (a new one started): a base snapshot is needed at once. */
  onBreak: (reason: string, chain: string) => void
  /** A tick failed: logged by the owner. */
  onFailure: (message: string, code: string | undefined) => void
}

type DistributiveOmit<T, K extends keyof any> = T extends unknown ? Omit<T, K> : never

/** The main thread's handle on the follower's worker thread: requests answered in order, events passed on. */
export class FollowerThread {
  private readonly worker: Worker
  private readonly exited: Promise<unknown>
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (value: unknown) => void, reject: (err: Error) => void }>()
  private gone: Error | undefined

  constructor (settings: FollowerSettings, tickMs: number, events: FollowerEvents) {
    this.worker = new Worker(join(__dirname, 'follower-entry.js'), { workerData: { settings, tickMs }, execArgv: [] })
    this.exited = once(this.worker, 'exit')
    this.worker.on('message', (message: FollowerMessage) => {
      switch (message.type) {
        case 'reply':
        case 'reply-error': {
          const waiting = this.pending.get(message.id)
          this.pending.delete(message.id)
          if (message.type === 'reply') waiting?.resolve(message.value)
          else waiting?.reject(new TaskFailure(message.message, message.code))
          break
        }
        case 'broke':
          events.onBreak(message.reason, message.chain)
          break
        case 'failed':
          events.onFailure(message.message, message.code)
      }
    })
    const fail = (err: Error): void => {
      this.gone = err
      for (const waiting of this.pending.values()) waiting.reject(err)
      this.pending.clear()
    }
    this.worker.on('error', fail)
    this.worker.on('exit', (code) => fail(new TaskFailure(`the follower thread stopped (exit code ${code})`)))
  }

  /** Starts following, carrying on the chain of the segment at `resume.path` (the last stored) when the WAL allows. */
  async start (resume: { path: string } | undefined): Promise<FollowStart> {
    return await this.request({ type: 'start', resume }) as FollowStart
  }

  /** Starts a new chain where the WAL ends now; returns its id. */
  async restartChain (reason: string): Promise<string> {
    return await this.request({ type: 'new-chain', reason }) as string
  }

  /** Reads what was committed up to now and finishes the open segment. */
  async cut (): Promise<CutResult> {
    return await this.request({ type: 'cut' }) as CutResult
  }

  /**
   * Copies a base snapshot in the follower's thread, which notes exactly which commits of its chain it holds.
   * Stops (the temp file is the caller's to remove) on timeout or when `signal` aborts.
   */
  async snapshot (job: SnapshotJob, { timeout, deadline, signal }: WorkerTaskOptions): Promise<CopyInfo & { continuity?: SnapshotContinuity }> {
    if (signal.aborted) throw new FST_SQLITE_BACKUP_CLOSED()
    let stopped: Error | undefined
    const stop = (err: Error): void => {
      stopped ??= err
      this.worker.postMessage({ type: 'abort-snapshot' })
    }
    const onAbort = (): void => stop(new FST_SQLITE_BACKUP_CLOSED())
    signal.addEventListener('abort', onAbort, { once: true })
    const timer = setTimeout(() => stop(new FST_SQLITE_BACKUP_TIMEOUT(timeout, 'If a long write transaction holds the database, wait for it to end, or raise the "timeout" option')), deadline === undefined ? timeout : Math.max(0, deadline - Date.now()))
    try {
      return await this.request({ type: 'snapshot', job }) as CopyInfo & { continuity?: SnapshotContinuity }
    } catch (err) {
      throw stopped ?? err
    } finally {
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
    }
  }

  /** Lets every lock go and ends the thread. */
  async close (): Promise<void> {
    if (this.gone === undefined) await this.request({ type: 'close' }).catch(() => {})
    // A thread that does not end by itself (a stuck request) is ended.
    const timer = setTimeout(() => { this.worker.terminate().catch(() => {}) }, 2000)
    await this.exited
    clearTimeout(timer)
  }

  private async request (request: DistributiveOmit<FollowerRequest, 'id'>): Promise<unknown> {
    if (this.gone) throw this.gone
    const id = this.nextId++
    return await new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.worker.postMessage({ ...request, id })
    })
  }
}
