// A bystander: a process that only watches its own event loop over the same window as a measurement. What it sees
// the machine did (CPU contention, the host's steal), not code on the measured loop.
import { fileURLToPath } from 'node:url'
import { forkChild, nextMessage, reap } from './children.mjs'

const IDLE_LOOP = fileURLToPath(new URL('../child/idle-loop.mjs', import.meta.url))

/** Starts the bystander; `watch()` begins its window, `stop()` ends it with its longest delay in ms. */
export async function startIdleLoop () {
  const child = forkChild(IDLE_LOOP)
  await nextMessage(child, 'ready', 10_000)
  return {
    watch () {
      child.send({ type: 'start' })
    },
    async stop () {
      const stopped = nextMessage(child, 'stopped', 10_000)
      child.send({ type: 'stop' })
      const { maxMs } = await stopped
      await reap(child)
      return maxMs
    },
    kill () {
      child.kill('SIGKILL')
    }
  }
}
