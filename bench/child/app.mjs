// The app process: runs Fastify with an open connection to the database, as an app would, and takes one backup
// with the method under test when told to. Fresh for every measurement, so its peak memory is this backup's own.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import Database from 'better-sqlite3'
import { methods } from '../methods/index.mjs'
import { peakRss } from '../lib/memory.mjs'

const [methodName, dbPath, scratchDir, optionsJson] = process.argv.slice(2)
const method = methods[methodName]
process.on('disconnect', () => process.exit(0))

try {
  const fastify = Fastify({ logger: false })
  fastify.get('/', async () => ({ ok: true }))
  const appDb = new Database(dbPath, { fileMustExist: true })
  appDb.pragma('busy_timeout = 5000')
  const ctx = { fastify, appDb, dbPath, scratchDir, options: JSON.parse(optionsJson ?? '{}') }
  await method.setup(ctx)
  await fastify.ready()
  // What the measured backup finds in place (e.g. a previous backup that retention then deletes).
  await method.prepare?.(ctx)
  // Let the start-up garbage settle, so the peak before the backup is not still climbing.
  await sleep(200)

  process.once('message', async (message) => {
    if (message.type !== 'go') return
    try {
      const before = peakRss()
      // A fresh histogram (reset() would drop the next sample); 1 ms resolution catches any block of 2 ms or more.
      const delay = monitorEventLoopDelay({ resolution: 1 })
      delay.enable()
      // The histogram's first tick only sets its baseline; without a tick before a synchronous backup, the block
      // would never be recorded.
      await sleep(5)
      // Time this thread spent running code (not waiting) during the backup: a delay longer than all of it was the
      // machine (I/O stalls, CPU contention), not work done on the event loop.
      const utilization = performance.eventLoopUtilization()
      const started = process.hrtime.bigint()
      const copy = await method.backup(ctx)
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6
      // A synchronous backup blocks the timer; its delay is only recorded at the next tick, so wait for a few.
      await sleep(10)
      delay.disable()
      const activeMs = performance.eventLoopUtilization(utilization).active
      const after = peakRss()
      process.send({
        type: 'done',
        durationMs,
        copy,
        eventLoop: { maxMs: delay.max / 1e6, p99Ms: delay.percentile(99) / 1e6, samples: delay.count, activeMs },
        memory: { before, after, growth: after - before }
      })
      await fastify.close()
      appDb.close()
      process.disconnect()
    } catch (err) {
      process.send({ type: 'error', message: err.stack ?? String(err) })
    }
  })
  process.send({ type: 'ready' })
} catch (err) {
  process.send({ type: 'error', message: err.stack ?? String(err) })
}
