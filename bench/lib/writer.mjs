// Parent side of the writer process (child/writer.mjs).
import { fileURLToPath } from 'node:url'
import { forkChild, nextMessage, reap } from './children.mjs'

const SCRIPT = fileURLToPath(new URL('../child/writer.mjs', import.meta.url))

export async function startWriter (dbPath) {
  const child = forkChild(SCRIPT, [dbPath])
  await nextMessage(child, 'ready', 30_000)
  return {
    /** Starts a new phase; resolves with the id of the last pair committed before it. */
    async phase (name) {
      const reply = nextMessage(child, 'phase', 30_000)
      child.send({ type: 'phase', name })
      return (await reply).lastId
    },
    /** Stops the writer and returns the figures of each phase, by name. */
    async stop () {
      const reply = nextMessage(child, 'stats', 30_000)
      child.send({ type: 'stop' })
      const { phases } = await reply
      await reap(child)
      return Object.fromEntries(phases.map((p) => [p.name, p]))
    },
    kill () {
      child.kill('SIGKILL')
    }
  }
}
