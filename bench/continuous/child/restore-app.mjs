// The app of the restore-time benchmark: registers the plugin in continuous mode, waits for its base snapshot,
// then updates random rows of the blobs table with new random blobs, ~100 rows a transaction, until the WAL frames
// written hold about `changesBytes` of page data; then sync(), and closes the app.
//   node restore-app.mjs '<json: { dbPath, destination, changesBytes, rowsPerTx, spreadSeconds }>'
import { createRequire } from 'node:module'
import { setTimeout as sleep, setImmediate as yieldToLoop } from 'node:timers/promises'
import Fastify from 'fastify'
import { openConnection } from './timed-commits.mjs'
import { openWalIndex } from './wal-index.mjs'

const require = createRequire(import.meta.url)
const fastifySqliteBackup = require('fastify-sqlite-backup')

const { dbPath, destination, changesBytes, rowsPerTx, spreadSeconds } = JSON.parse(process.argv[2])
setTimeout(() => process.exit(1), 3 * 60 * 60_000).unref()
process.on('disconnect', () => process.exit(0))
const BASE_LIMIT_MS = 30 * 60_000

async function main () {
  const db = openConnection(dbPath)
  const fastify = Fastify({ logger: { level: 'warn' } })
  await fastify.register(fastifySqliteBackup, { database: db, destination, continuous: true, interval: '24h' })
  await fastify.ready()

  // The base: the plugin takes it by itself when continuous backup starts; sync() waits for it.
  let started = performance.now()
  await fastify.backup.sync()
  while (fastify.backup.status().published < 1) {
    if (performance.now() - started > BASE_LIMIT_MS) throw new Error(`no base snapshot within ${BASE_LIMIT_MS} ms`)
    await sleep(50)
  }
  const baseMs = performance.now() - started
  process.send({ type: 'progress', message: `base snapshot published in ${(baseMs / 1000).toFixed(1)} s` })

  const pageSize = db.pragma('page_size', { simple: true })
  const { lo, hi } = db.prepare('SELECT min(id) AS lo, max(id) AS hi FROM blobs').get()
  const update = db.prepare('UPDATE blobs SET data = randomblob(length(data)) WHERE id = ?')
  const transaction = db.transaction((ids) => {
    for (const id of ids) update.run(id)
  })
  // Opened after the first write of the plugin's follower, so the -shm exists.
  const walIndex = openWalIndex(dbPath, pageSize)
  const totals = { transactions: 0, rows: 0, frames: 0, pageBytes: 0, walRestarts: 0 }
  started = performance.now()
  let lastProgress = started
  // Spread over `spreadSeconds` by the share of page data written so far (0: as fast as it goes, yielding to the
  // event loop between transactions).
  while (totals.pageBytes < changesBytes) {
    const ids = Array.from({ length: rowsPerTx }, () => lo + Math.floor(Math.random() * (hi - lo + 1)))
    transaction(ids)
    const { frames, restarted } = walIndex.framesSince()
    totals.transactions++
    totals.rows += ids.length
    totals.frames += frames
    totals.pageBytes += frames * pageSize
    if (restarted) totals.walRestarts++
    const now = performance.now()
    if (now - lastProgress > 2000) {
      lastProgress = now
      process.send({ type: 'progress', message: `${(totals.pageBytes / 2 ** 20).toFixed(0)} of ${(changesBytes / 2 ** 20).toFixed(0)} MiB of page data committed` })
    }
    if (spreadSeconds > 0) {
      const due = started + Math.min(1, totals.pageBytes / changesBytes) * spreadSeconds * 1000
      await sleep(Math.max(0, due - performance.now()))
    } else {
      await yieldToLoop()
    }
  }
  walIndex.close()
  const changeMs = performance.now() - started

  started = performance.now()
  const synced = await fastify.backup.sync()
  const syncMs = performance.now() - started
  const status = fastify.backup.status()
  started = performance.now()
  await fastify.close()
  const closeMs = performance.now() - started
  db.close()
  process.send({
    type: 'done',
    baseMs,
    changeMs,
    syncMs,
    closeMs,
    pageSize,
    ...totals,
    position: synced.position,
    continuous: status.destinations[0].continuous,
    published: status.published
  }, () => process.exit(0))
}

main().catch((err) => {
  process.send({ type: 'error', message: err.stack ?? String(err) })
})
