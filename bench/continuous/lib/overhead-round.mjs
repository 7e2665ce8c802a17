// One measured round of the overhead benchmark: a fresh copy of the database, a fresh app process (the plugin
// with snapshots only, or continuous), its first snapshot awaited, then the writer in another process and the app's
// own writes, a warm-up, and the measured window: commit latencies in both processes, the app's event loop, the
// WAL's size every 50 ms, the app's RSS every second, and what the destination received.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import { forkChild, nextMessage, exited, isRunning, scratchDir } from './procs.mjs'
import { CONTINUOUS_CACHE, PROJECT_DIR } from './paths.mjs'
import { sampleWalSize, sampleRss, summarizeRss } from './samplers.mjs'
import { listDestination, written, totals } from './destination-files.mjs'
import { copyDatabase } from './database-copy.mjs'
import { wasInterrupted } from './interrupted.mjs'
import { TABLE_SQL } from '../child/timed-commits.mjs'

const APP = fileURLToPath(new URL('../child/overhead-app.mjs', import.meta.url))
const WRITER = fileURLToPath(new URL('../child/timed-writer.mjs', import.meta.url))
const READY_LIMIT_MS = 15 * 60_000
const MESSAGE_LIMIT_MS = 30_000
const STOP_LIMIT_MS = 60_000

/** This round's own copy of the cached database, with the benchmark's table, its WAL folded in. */
function prepareDatabase (source, target) {
  copyDatabase(source, target)
  const db = new Database(target, { fileMustExist: true })
  try {
    db.pragma('journal_mode = WAL')
    db.exec(TABLE_SQL)
    db.pragma('wal_checkpoint(TRUNCATE)')
  } finally {
    db.close()
  }
}

/** Sleeps `ms`, but fails as soon as one of the processes exits. */
async function holdWhileAlive (ms, processes) {
  const until = performance.now() + ms
  for (;;) {
    const dead = processes.find((p) => !isRunning(p.child))
    if (dead) throw new Error(`${dead.name} exited (${dead.child.signalCode ?? `code ${dead.child.exitCode}`}) during the round`)
    const left = until - performance.now()
    if (left <= 0) return
    await sleep(Math.min(left, 200))
  }
}

/** The plugin's log lines (level warn and up), parsed; pino writes one JSON document a line. */
function logLines (file) {
  if (!existsSync(file)) return []
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => {
    try {
      const { level, msg, reason, err } = JSON.parse(line)
      return { level, msg, reason, err: err?.message }
    } catch {
      return { level: null, msg: line }
    }
  })
}

/**
 * `variant`: { id, continuous: false | true | { walSizeLimit }, sizeMb, baseDb }. Never throws: what goes wrong is
 * the record's `error`, and the round's directory is then kept for a look (all of them with `keep`).
 */
export async function measureRound ({ variant, round, seconds, warmupSeconds, rate, appRate, keep, log }) {
  mkdirSync(CONTINUOUS_CACHE, { recursive: true })
  const runDir = mkdtempSync(join(CONTINUOUS_CACHE, `overhead-${variant.id}-`))
  const scratch = scratchDir(runDir)
  const dbPath = join(runDir, 'app.db')
  const destination = join(runDir, 'destination')
  const record = { round, variant: variant.id, sizeMb: variant.sizeMb, continuous: variant.continuous, dir: runDir }
  const processes = []
  const logs = { app: join(runDir, 'app.log'), writer: join(runDir, 'writer.log') }
  let wal = null
  let rss = null
  try {
    // dist/ is rebuilt by others while they work: which build this round's app loaded.
    record.distBuiltAt = statSync(join(PROJECT_DIR, 'dist', 'index.js')).mtime.toISOString()
    prepareDatabase(variant.baseDb, dbPath)
    mkdirSync(destination)
    record.dbBytesAtStart = statSync(dbPath).size

    const config = { dbPath, destination, continuous: variant.continuous, appRate }
    const app = forkChild(APP, [JSON.stringify(config)], logs.app)
    processes.push({ name: 'app', child: app })
    const ready = await nextMessage(app, 'ready', READY_LIMIT_MS)
    record.options = ready.options
    record.synchronous = ready.synchronous
    record.firstSnapshotMs = ready.snapshotMs

    const writer = forkChild(WRITER, [dbPath, String(rate)], logs.writer)
    processes.push({ name: 'writer', child: writer })
    await nextMessage(writer, 'ready', MESSAGE_LIMIT_MS)
    const appWrites = nextMessage(app, 'writes-started', MESSAGE_LIMIT_MS)
    app.send({ type: 'start-writes' })
    await appWrites
    await holdWhileAlive(warmupSeconds * 1000, processes)

    // The window.
    const before = listDestination(destination)
    wal = sampleWalSize(`${dbPath}-wal`, 50)
    rss = sampleRss(app.pid, 1000)
    const started = [nextMessage(app, 'window-started', MESSAGE_LIMIT_MS), nextMessage(writer, 'window-started', MESSAGE_LIMIT_MS)]
    app.send({ type: 'window-start' })
    writer.send({ type: 'window-start' })
    await Promise.all(started)
    const windowStarted = performance.now()
    await holdWhileAlive(seconds * 1000, processes)
    const ended = [nextMessage(app, 'window', MESSAGE_LIMIT_MS), nextMessage(writer, 'window', MESSAGE_LIMIT_MS)]
    app.send({ type: 'window-end' })
    writer.send({ type: 'window-end' })
    const [appWindow, writerWindow] = await Promise.all(ended)
    record.windowSeconds = (performance.now() - windowStarted) / 1000
    record.wal = wal.stop()
    record.rssSamples = rss.stop()
    record.memory = summarizeRss(record.rssSamples)
    const after = listDestination(destination)
    record.dbBytes = statSync(dbPath).size
    record.writer = writerWindow.stats
    record.app = appWindow.stats
    record.eventLoop = appWindow.eventLoop
    record.cpuPercent = appWindow.cpuPercent
    record.heap = appWindow.heap
    record.statusBefore = appWindow.statusBefore
    record.statusAfter = appWindow.statusAfter
    record.destination = { written: written(destination, before, after), heldAtEnd: totals(destination, after) }
    record.snapshotsInWindow = appWindow.statusAfter.published - appWindow.statusBefore.published

    // Stopped as an app is: the writer first, then fastify.close() (which ships what is left).
    const writerStopped = nextMessage(writer, 'stopped', STOP_LIMIT_MS)
    writer.send({ type: 'stop' })
    await writerStopped
    const appStopped = nextMessage(app, 'stopped', STOP_LIMIT_MS)
    app.send({ type: 'stop' })
    record.closeMs = (await appStopped).closeMs
    await Promise.all(processes.map((p) => exited(p.child)))
    record.logs = logLines(logs.app)
    return record
  } catch (err) {
    record.error = err.message.split('\n')[0]
    record.errorDetail = err.message
    record.logs = logLines(logs.app)
    if (wasInterrupted()) return record
    log(`FAILED ${variant.id} round ${round}: ${record.error}`)
    for (const [name, file] of Object.entries(logs)) {
      if (!existsSync(file)) continue
      const tail = readFileSync(file, 'utf8').trim().split('\n').slice(-8).join('\n')
      if (tail) log(`  ${name} log:\n${tail.replace(/^/gm, '    ')}`)
    }
    return record
  } finally {
    // Stopped already when the window ended; again (harmlessly) when it failed midway.
    wal?.stop()
    rss?.stop()
    for (const p of processes) p.child.kill('SIGKILL')
    await Promise.all(processes.map((p) => exited(p.child)))
    if ((record.error && !wasInterrupted()) || keep) {
      scratch.keep()
      log(`  kept ${runDir}${record.error ? ' for a look' : ''}`)
    } else {
      scratch.remove()
    }
  }
}
