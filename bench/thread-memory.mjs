// What the plugin's threads cost in memory, kept for the app's lifetime: the app's RSS before ready, once the
// snapshot thread has started (at ready), and once a large snapshot (100 MB) has been taken, which starts its copy
// helper on a machine with three CPUs or more (lib/check-beside-copy.ts).
//   npm run build && node bench/thread-memory.mjs
import Fastify from 'fastify'
import { createRequire } from 'node:module'
import { availableParallelism } from 'node:os'
import { mkdtempSync, rmSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ensureDatabase } from './lib/database.mjs'
import { SCRATCH_DIR, ensureDirs } from './lib/paths.mjs'

const require = createRequire(import.meta.url)
const backup = require('fastify-sqlite-backup')
const { checksBesideCopy } = require('../dist/check-beside-copy.js')
// Long enough for a new thread's start-up garbage to settle.
const SETTLE_MS = 500

function rssMb () {
  return Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024
}

ensureDirs()
const database = ensureDatabase(100, 'wal', console.error)
const dir = mkdtempSync(join(SCRATCH_DIR, 'thread-memory-'))
try {
  const app = Fastify()
  await app.register(backup, { database, destination: join(dir, 'backups'), interval: false, keep: 1 })
  const registered = rssMb()
  await app.ready()
  await sleep(SETTLE_MS)
  const ready = rssMb()
  await app.backup.now({ force: true })
  await sleep(SETTLE_MS)
  const afterLarge = rssMb()
  await app.close()
  console.log('| app RSS | MB | added |')
  console.log('|---|---|---|')
  console.log(`| registered, not ready | ${registered.toFixed(1)} | |`)
  console.log(`| ready: the snapshot thread started | ${ready.toFixed(1)} | ${(ready - registered).toFixed(1)} |`)
  const helper = checksBesideCopy() ? 'its copy helper started' : `no copy helper with ${availableParallelism()} CPUs`
  console.log(`| after a 100 MB backup: ${helper} | ${afterLarge.toFixed(1)} | ${(afterLarge - ready).toFixed(1)} |`)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
