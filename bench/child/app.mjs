// The app process: runs Fastify with an open connection to the database, as an app would, and takes one backup
// with the method under test when told to. Fresh for every measurement, so its peak memory is this backup's own.
import { monitorEventLoopDelay, performance, PerformanceObserver } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import Database from 'better-sqlite3'
import { methods } from '../methods/index.mjs'
import { peakRss } from '../lib/memory.mjs'
import { cpuWaits } from '../lib/cpu-waits.mjs'

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
  const prepared = await method.prepare?.(ctx)
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
      const gaps = watchLongestGap()
      const waits = cpuWaits()
      const started = process.hrtime.bigint()
      const copy = await method.backup(ctx)
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6
      // A synchronous backup blocks the timer; its delay is only recorded at the next tick, so wait for a few.
      await sleep(10)
      delay.disable()
      const gap = await gaps.stop()
      const waited = waits.stop()
      const activeMs = performance.eventLoopUtilization(utilization).active
      const after = peakRss()
      process.send({
        type: 'done',
        durationMs,
        copy,
        eventLoop: { maxMs: delay.max / 1e6, p99Ms: delay.percentile(99) / 1e6, samples: delay.count, activeMs, ...gap, ...waited },
        memory: { before, after, growth: after - before },
        firstBackupMs: prepared?.firstBackupMs
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

/**
 * The longest gap between two ticks of a 1 ms timer, and how much of it the process's garbage collections took
 * (PerformanceObserver 'gc' entries overlapping it): a delay that a GC of the app's own heap explains is not the
 * backup's code running on the event loop.
 */
function watchLongestGap () {
  const collections = []
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) collections.push({ from: entry.startTime, to: entry.startTime + entry.duration })
  })
  observer.observe({ entryTypes: ['gc'] })
  let last = performance.now()
  let longest = { ms: 0, from: last, to: last }
  const timer = setInterval(() => {
    const now = performance.now()
    if (now - last > longest.ms) longest = { ms: now - last, from: last, to: now }
    last = now
  }, 1)
  return {
    async stop () {
      clearInterval(timer)
      // GC entries are delivered asynchronously.
      await sleep(5)
      observer.disconnect()
      const overlap = (c) => Math.max(0, Math.min(c.to, longest.to) - Math.max(c.from, longest.from))
      const gcInGapMs = collections.reduce((sum, c) => sum + overlap(c), 0)
      const longestGcMs = collections.reduce((most, c) => Math.max(most, c.to - c.from), 0)
      return { longestGapMs: longest.ms, gcInGapMs, longestGcMs, withoutGcMs: longest.ms - gcInGapMs }
    }
  }
}
