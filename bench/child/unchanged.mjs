// The cost of deciding "nothing changed", with no writer running: the plugin's data_version read and its whole
// now() skip path, and the original design's answer to the same question, a sha256 of the whole file.
import { readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import Fastify from 'fastify'
import Database from 'better-sqlite3'
import { median } from '../lib/stats.mjs'

const require = createRequire(import.meta.url)
const fastifySqliteBackup = require('fastify-sqlite-backup')
const [dbPath, scratchDir] = process.argv.slice(2)
const BATCHES = 200
const PER_BATCH = 50
const SKIPS = 200

function elapsedMs (started) {
  return Number(process.hrtime.bigint() - started) / 1e6
}

try {
  // data_version on a long-lived connection, read the way the plugin reads it; timed in batches because one read
  // is close to the clock's own cost.
  const db = new Database(dbPath, { readonly: true, fileMustExist: true })
  db.pragma('busy_timeout = 0')
  const perRead = []
  for (let b = 0; b < BATCHES; b++) {
    const started = process.hrtime.bigint()
    for (let i = 0; i < PER_BATCH; i++) db.pragma('data_version', { simple: true })
    perRead.push(elapsedMs(started) / PER_BATCH)
  }
  db.close()

  const fastify = Fastify({ logger: false })
  await fastify.register(fastifySqliteBackup, { database: dbPath, destination: join(scratchDir, 'backups'), interval: false, keep: 2 })
  await fastify.ready()
  await fastify.backup.now({ force: true })
  const skipTimes = []
  let notSkipped = 0
  for (let i = 0; i < SKIPS; i++) {
    const started = process.hrtime.bigint()
    const result = await fastify.backup.now()
    skipTimes.push(elapsedMs(started))
    if (!result.skipped) notSkipped++
  }
  await fastify.close()

  const started = process.hrtime.bigint()
  createHash('sha256').update(readFileSync(dbPath)).digest('hex')
  const sha256Ms = elapsedMs(started)

  process.send({ type: 'done', dataVersionMs: median(perRead), skipPathMs: median(skipTimes), notSkipped, sha256Ms })
} catch (err) {
  process.send({ type: 'error', message: err.stack ?? String(err) })
}
