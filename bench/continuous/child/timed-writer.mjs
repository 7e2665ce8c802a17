// The writer in another process of the overhead benchmark: a plain Node process committing one small row per
// transaction at a steady rate, each commit timed. Driven by messages: window-start, window-end (figures back), stop.
//   node timed-writer.mjs <dbPath> <rate>
import { openConnection, startTimedCommits } from './timed-commits.mjs'

const [dbPath, rate] = process.argv.slice(2)
// Never meant to outlive its benchmark; this bounds it if the parent forgets it.
setTimeout(() => process.exit(1), 3 * 60 * 60_000).unref()
process.on('disconnect', () => process.exit(0))

try {
  const db = openConnection(dbPath)
  const commits = startTimedCommits(db, { rate: Number(rate), source: 1 })
  process.on('message', (message) => {
    if (message?.type === 'window-start') {
      commits.startWindow()
      process.send({ type: 'window-started' })
    } else if (message?.type === 'window-end') {
      process.send({ type: 'window', stats: commits.endWindow() })
    } else if (message?.type === 'stop') {
      commits.stop()
      db.close()
      process.send({ type: 'stopped' }, () => process.exit(0))
    }
  })
  process.send({ type: 'ready', pid: process.pid, synchronous: commits.synchronous })
} catch (err) {
  process.send({ type: 'error', message: err.stack ?? String(err) })
}
