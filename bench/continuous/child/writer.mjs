// The app of the litestream method: a plain Node process writing with better-sqlite3. Litestream runs beside it.
//   node writer.mjs <dbPath> <rate> <checkpointEveryMs|0>
import { openAppDatabase, runWorkload } from './workload.mjs'

const [dbPath, rate, checkpointEveryMs] = process.argv.slice(2)
// Never meant to run for long; this bounds it if the parent forgets it.
setTimeout(() => process.exit(1), 10 * 60_000).unref()
process.on('disconnect', () => process.exit(0))

try {
  const db = openAppDatabase(dbPath)
  const { synchronous } = runWorkload(db, { rate: Number(rate), checkpointEveryMs: Number(checkpointEveryMs) })
  process.send({ type: 'ready', pid: process.pid, synchronous })
} catch (err) {
  process.send({ type: 'error', message: err.stack ?? String(err) })
}
