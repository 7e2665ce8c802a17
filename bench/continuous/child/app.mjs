// The app of the plugin method: a Fastify server with this project's plugin in continuous mode, writing from its
// own connection on a timer.
//   node app.mjs <dbPath> <destinationDir> <rate> <checkpointEveryMs|0>
import { createRequire } from 'node:module'
import Fastify from 'fastify'
import { openAppDatabase, runWorkload } from './workload.mjs'

// The package as built in dist/, resolved by its own name, as bench/methods/plugin.mjs does.
const require = createRequire(import.meta.url)
const fastifySqliteBackup = require('fastify-sqlite-backup')

const [dbPath, destination, rate, checkpointEveryMs] = process.argv.slice(2)
setTimeout(() => process.exit(1), 10 * 60_000).unref()
process.on('disconnect', () => process.exit(0))

async function startServer (options) {
  // Warnings and errors of the plugin land in this process's log file.
  const fastify = Fastify({ logger: { level: 'warn' } })
  fastify.get('/', async () => ({ ok: true }))
  try {
    await fastify.register(fastifySqliteBackup, options)
    await fastify.listen({ port: 0, host: '127.0.0.1' })
    return fastify
  } catch (err) {
    await fastify.close().catch(() => {})
    throw err
  }
}

try {
  const db = openAppDatabase(dbPath)
  const options = { database: dbPath, destination, continuous: true, interval: '24h' }
  await startServer(options)
  const { synchronous } = runWorkload(db, { rate: Number(rate), checkpointEveryMs: Number(checkpointEveryMs) })
  process.send({ type: 'ready', pid: process.pid, synchronous, options })
} catch (err) {
  process.send({ type: 'error', message: err.stack ?? String(err) })
}
