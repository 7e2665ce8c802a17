// Entry point of the follower's worker thread: one WalFollower, ticking on its own timer, answering the main
// thread's requests. A base snapshot's copy yields between its steps, so ticks and cuts go on while it runs.
import { parentPort, workerData } from 'node:worker_threads'
import { WalFollower, type FollowerSettings } from './follower'
import { snapshotDatabase, type SnapshotJob } from '../snapshot'
import { TaskAborted } from '../worker/protocol'
import { verifySegment } from './segment-reader'
import type { ChainState } from './chain'
import type { FollowerRequest, FollowerMessage, SnapshotContinuity } from './follower-protocol'

const { settings, tickMs } = workerData as { settings: FollowerSettings, tickMs: number }
const follower = new WalFollower(settings)
let timer: NodeJS.Timeout | undefined
let snapshotAborted = false

function post (message: FollowerMessage): void {
  parentPort!.postMessage(message)
}

function tick (now = Date.now()): void {
  try {
    const result = follower.tick(now)
    if (result.broke !== undefined) post({ type: 'broke', reason: result.broke, chain: follower.chain!.chain })
  } catch (err) {
    post({ type: 'failed', message: (err as Error).message, code: (err as { code?: string }).code })
  }
}

/** The copy of a base snapshot, with the chain's commits it is known to hold: all up to `from`, none past `to`. */
async function snapshot (job: SnapshotJob): Promise<unknown> {
  snapshotAborted = false
  const fromAt = Date.now()
  tick(fromAt)
  const before = follower.chain!
  let after = before
  let pinnedAt = fromAt
  const copy = await snapshotDatabase(job, () => snapshotAborted, {
    onPinned: () => {
      pinnedAt = Date.now()
      tick(pinnedAt)
      after = follower.chain!
    }
  })
  const continuity: (SnapshotContinuity & { fromAt: number, pinnedAt: number }) | undefined = before.chain === after.chain
    ? { chain: before.chain, from: before.commits, to: after.commits, fromAt, pinnedAt }
    : undefined
  return { ...copy, continuity }
}

/** Where a chain stands after its segment at `path` (checked whole first). */
function chainAfter (path: string): ChainState {
  const segment = verifySegment(path)
  return { chain: segment.header.chain, index: segment.header.index + 1, commits: segment.header.firstCommit + segment.commits - 1, position: segment.to }
}

async function handle (request: FollowerRequest): Promise<unknown> {
  switch (request.type) {
    case 'start': {
      const started = follower.start(request.resume === undefined ? undefined : chainAfter(request.resume.path))
      timer = setInterval(() => tick(), tickMs)
      return started
    }
    case 'cut':
      tick()
      return { segment: follower.cut(), chain: follower.chain, walBytes: follower.walBytes }
    case 'new-chain':
      follower.restartChain()
      return follower.chain!.chain
    case 'snapshot':
      return await snapshot(request.job)
    case 'close':
      clearInterval(timer)
      follower.close()
      return undefined
  }
}

parentPort!.on('message', (message: FollowerRequest | { type: 'abort-snapshot' }) => {
  if (message.type === 'abort-snapshot') {
    snapshotAborted = true
    return
  }
  handle(message).then(
    (value) => {
      post({ type: 'reply', id: message.id, value })
      // Nothing else keeps the thread alive: it ends once the reply is out.
      if (message.type === 'close') parentPort!.close()
    },
    (err: Error & { code?: unknown }) => post(err instanceof TaskAborted
      ? { type: 'reply-error', id: message.id, message: 'aborted', code: 'ABORTED' }
      : { type: 'reply-error', id: message.id, message: err.message, code: typeof err.code === 'string' ? err.code : undefined })
  )
})
