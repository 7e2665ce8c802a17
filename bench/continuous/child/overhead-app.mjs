// The app of the overhead benchmark: a Fastify server with this project's plugin (snapshots only, or continuous),
// committing at a modest rate from its own connection, with the event loop's delay measured over the window.
//   node overhead-app.mjs '<json: { dbPath, destination, continuous: false | true | { walSizeLimit }, appRate }>'
// Messages: start-writes, window-start, window-end (figures back), stop (closes the app, which ships what is left).
import { createRequire } from 'node:module'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import { openConnection, startTimedCommits } from './timed-commits.mjs'

// The package as built in dist/, resolved by its own name, as child/app.mjs does.
const require = createRequire(import.meta.url)
const fastifySqliteBackup = require('fastify-sqlite-backup')

const config = JSON.parse(process.argv[2])
setTimeout(() => process.exit(1), 3 * 60 * 60_000).unref()
process.on('disconnect', () => process.exit(0))
// The first snapshot of a large database takes a while on a busy machine; past this something is wrong.
const SNAPSHOT_LIMIT_MS = 10 * 60_000

let fastify
let db
let commits = null
let window = null

function fail (err) {
  process.send({ type: 'error', message: err.stack ?? String(err) })
}

function pluginStatus () {
  const status = fastify.backup.status()
  return {
    published: status.published,
    skipped: status.skipped,
    failed: status.failed,
    running: status.running,
    lastError: status.lastError,
    lastBackupId: status.destinations[0].lastBackupId,
    continuous: status.destinations[0].continuous ?? null
  }
}

/** Off: one snapshot now, so both modes enter the window with one in the destination. On: the plugin's own base. */
async function firstSnapshot () {
  const started = performance.now()
  if (config.continuous) {
    // sync() waits for the base of a chain that has just started.
    await fastify.backup.sync()
    while (fastify.backup.status().published < 1) {
      if (performance.now() - started > SNAPSHOT_LIMIT_MS) throw new Error(`no base snapshot within ${SNAPSHOT_LIMIT_MS} ms`)
      await sleep(50)
    }
  } else {
    await fastify.backup.now()
  }
  return performance.now() - started
}

async function onMessage (message) {
  if (message?.type === 'start-writes') {
    // --app-rate 0: the app does not write (the writer in the other process is then the only one).
    if (config.appRate > 0) commits = startTimedCommits(db, { rate: config.appRate, source: 2 })
    process.send({ type: 'writes-started' })
  } else if (message?.type === 'window-start') {
    commits?.startWindow()
    // A fresh histogram, 1 ms resolution; its first tick only sets its baseline.
    const delay = monitorEventLoopDelay({ resolution: 1 })
    delay.enable()
    window = { delay, elu: performance.eventLoopUtilization(), cpu: process.cpuUsage(), started: performance.now(), status: pluginStatus() }
    process.send({ type: 'window-started' })
  } else if (message?.type === 'window-end') {
    const { delay } = window
    delay.disable()
    const ms = performance.now() - window.started
    const cpu = process.cpuUsage(window.cpu)
    const memory = process.memoryUsage()
    process.send({
      type: 'window',
      stats: commits?.endWindow() ?? null,
      eventLoop: {
        maxMs: delay.max / 1e6,
        p99Ms: delay.percentile(99) / 1e6,
        p50Ms: delay.percentile(50) / 1e6,
        meanMs: delay.mean / 1e6,
        samples: delay.count,
        utilization: performance.eventLoopUtilization(window.elu).utilization
      },
      // Every thread of the process: the follower's worker thread included.
      cpuPercent: ((cpu.user + cpu.system) / 1000) / ms * 100,
      heap: { heapUsed: memory.heapUsed, external: memory.external, arrayBuffers: memory.arrayBuffers },
      statusBefore: window.status,
      statusAfter: pluginStatus()
    })
  } else if (message?.type === 'stop') {
    commits?.stop()
    const started = performance.now()
    await fastify.close()
    const closeMs = performance.now() - started
    db.close()
    process.send({ type: 'stopped', closeMs }, () => process.exit(0))
  }
}

try {
  db = openConnection(config.dbPath)
  const options = { database: db, destination: config.destination, interval: '24h' }
  if (config.continuous) options.continuous = config.continuous
  // Warnings and errors of the plugin land in this process's log file.
  fastify = Fastify({ logger: { level: 'warn' } })
  fastify.get('/', async () => ({ ok: true }))
  await fastify.register(fastifySqliteBackup, options)
  await fastify.listen({ port: 0, host: '127.0.0.1' })
  const snapshotMs = await firstSnapshot()
  process.on('message', (message) => onMessage(message).catch(fail))
  process.send({
    type: 'ready',
    pid: process.pid,
    synchronous: db.pragma('synchronous', { simple: true }),
    options: { ...options, database: config.dbPath },
    snapshotMs,
    status: pluginStatus()
  })
} catch (err) {
  fail(err)
}
