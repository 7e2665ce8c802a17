import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { existsSync, readdirSync, readFileSync, statSync, watch } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import backup, { type FastifySqliteBackupOptions, type BackupResult } from 'fastify-sqlite-backup'
import { createDatabase, integrityCheck, sha256File, tempFiles, threadCount, openFilesUnder, waitFor, delay } from './helpers'

// Every phase checks that close() resolves within closeTimeout plus this much.
const CLOSE_SLACK_MS = 3000
const FINAL_BACKUP = /^\d{8}T\d{9}Z-[0-9a-f]{8}\.sqlite$/

// One database big enough that a copy takes a while (about 40 MB), built once and shared by the phases.
const shared = t.testdir()
const bigPath = join(shared, 'big.db')
createDatabase(bigPath, { rows: 38_000 }).close()

interface Baseline {
  threads: number
  resources: string[]
}

/** What this process holds before the app exists; after close() it must hold exactly that again. */
async function baseline (): Promise<Baseline> {
  await delay(50) // let an earlier test's clean-up settle
  return { threads: threadCount(), resources: process.getActiveResourcesInfo().sort() }
}

/** now(), with its outcome looked at later: a rejection is never unhandled in between. */
function call (app: FastifyInstance, options?: { force: boolean }): Promise<BackupResult> {
  const promise = app.backup.now(options)
  promise.catch(() => {})
  return promise
}

async function startApp (t: Test, options: FastifySqliteBackupOptions): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(backup, options)
  await app.ready()
  return app
}

type Outcome = { result: BackupResult } | { error: Error & { code?: string } } | { hung: true }

/** Settles every caller, or reports the ones still pending after `ms`: a hang. */
async function outcomes (callers: Array<Promise<BackupResult>>, ms: number): Promise<Outcome[]> {
  let timer: NodeJS.Timeout | undefined
  const hang = new Promise<Outcome>((resolve) => { timer = setTimeout(resolve, ms, { hung: true }) })
  try {
    return await Promise.all(callers.map((caller) => Promise.race([
      caller.then((result) => ({ result }), (error: Error) => ({ error })),
      hang
    ])))
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Closes the app and checks everything a close must leave behind; returns how long close() took. `own` are the
 * test's own connections: once they are closed too, nothing under `dirs` may be open. (SQLite keeps the file
 * descriptors of closed connections open while another connection of the process holds a lock on the same file,
 * so the plugin's are only gone for sure once the test's are closed.)
 */
async function closeAndCheck (t: Test, { app, closeTimeout, destination, dirs, before, callers, own = [] }: {
  app: FastifyInstance
  closeTimeout: number
  destination: string
  dirs: string[]
  before: Baseline
  callers: Array<Promise<BackupResult>>
  own?: Database.Database[]
}): Promise<number> {
  const started = Date.now()
  let timer: NodeJS.Timeout | undefined
  const closed = await Promise.race([
    app.close().then(() => true),
    new Promise<false>((resolve) => { timer = setTimeout(resolve, closeTimeout + CLOSE_SLACK_MS + 5000, false) })
  ])
  clearTimeout(timer)
  const took = Date.now() - started
  t.ok(closed, 'close() resolves')
  t.ok(took < closeTimeout + CLOSE_SLACK_MS, `within closeTimeout (${closeTimeout} ms) + ${CLOSE_SLACK_MS} ms: ${took} ms`)
  for (const db of own) {
    if (db.inTransaction) db.exec('COMMIT')
    db.close()
  }

  const settled = await outcomes(callers, 1000)
  settled.forEach((outcome, i) => {
    if ('hung' in outcome) t.fail(`now() caller ${i} is still pending after close()`)
    else if ('error' in outcome) t.equal(outcome.error.code, 'FST_SQLITE_BACKUP_CLOSED', `now() caller ${i} is told the app closed`)
    else t.equal(integrityCheck(outcome.result.path), 'ok', `now() caller ${i} got a complete backup`)
  })
  await t.rejects(app.backup.now(), { code: 'FST_SQLITE_BACKUP_CLOSED' }, 'a call after close is refused')

  t.same(tempFiles(destination), [], 'no temp file remains')
  for (const name of readdirSync(destination).filter((name) => FINAL_BACKUP.test(name))) {
    const path = join(destination, name)
    const record = JSON.parse(readFileSync(path.replace(/\.sqlite$/, '.json'), 'utf8'))
    t.equal(sha256File(path), record.sha256, `${name} matches its record`)
    t.equal(integrityCheck(path), 'ok', `${name} is complete`)
  }
  t.equal(threadCount(), before.threads, 'no worker thread remains')
  t.same(dirs.flatMap(openFilesUnder), [], 'no file is held open under the test\'s directories')
  // An fs request stays listed until the end of the tick in which its awaiter resumes: let that tick end.
  await new Promise((resolve) => setImmediate(resolve))
  t.same(process.getActiveResourcesInfo().sort(), before.resources, 'no timer, handle or request of the plugin remains')
  return took
}

t.test('close() while idle', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path)
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const before = await baseline()
  // A long closeTimeout: an idle app must not wait any of it (a ratio, not a clock bound that a loaded machine breaks).
  const closeTimeout = 30_000
  const app = await startApp(t, { database: db, destination, interval: '1h', closeTimeout })
  const done = await app.backup.now()
  const took = await closeAndCheck(t, { app, closeTimeout, destination, dirs: [dir], before, callers: [Promise.resolve(done)], own: [db] })
  t.ok(took < closeTimeout / 3, `an idle app closes at once, without waiting for closeTimeout (${took} ms)`)
})

t.test('close() while the snapshot is copying pages', async (t) => {
  const dir = t.testdir()
  const destination = join(dir, 'backups')
  const before = await baseline()
  const closeTimeout = 100
  // Paced, so that the copy is surely still running closeTimeout after close() (unpaced it may finish first).
  const app = await startApp(t, { database: bigPath, destination, interval: false, closeTimeout, maxRate: '4MiB' })
  const callers = [call(app)]
  await waitFor(() => tempFiles(destination).some((name) => name.endsWith('.sqlite') && statSync(join(destination, name)).size > 4 << 20), 30_000)
  callers.push(call(app), call(app, { force: true }))
  await closeAndCheck(t, { app, closeTimeout, destination, dirs: [dir, shared], before, callers })
  t.same(readdirSync(destination).filter((name) => FINAL_BACKUP.test(name)), [], 'the aborted copy published nothing')
})

t.test('close() while the snapshot waits for a lock held by another connection (rollback journal)', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { journalMode: 'delete' })
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const before = await baseline()
  const closeTimeout = 300
  const app = await startApp(t, { database: path, destination, interval: false, closeTimeout })
  db.exec('BEGIN EXCLUSIVE')
  const callers = [call(app)]
  await waitFor(() => threadCount() > before.threads)
  await delay(100)
  t.equal(app.backup.status().running, true, 'the run is waiting for the lock')
  callers.push(call(app), call(app))
  const took = await closeAndCheck(t, { app, closeTimeout, destination, dirs: [dir], before, callers, own: [db] })
  t.ok(took >= closeTimeout, `close() waited closeTimeout for the run first (${took} ms)`)
})

for (const closeTimeout of [0, 5000]) {
  t.test(`close() while a backup is being published and retention runs (keep: 1, closeTimeout: ${closeTimeout})`, async (t) => {
    const dir = t.testdir()
    const path = join(dir, 'app.db')
    const db = createDatabase(path, { rows: 3000 })
    t.teardown(() => db.close())
    const destination = join(dir, 'backups')
    // Several existing backups, so that retention has work to do.
    const maker = await startApp(t, { database: db, destination, interval: false, keep: 10 })
    for (let i = 0; i < 4; i++) await maker.backup.now({ force: true })
    await maker.close()

    const before = await baseline()
    const app = await startApp(t, { database: db, destination, interval: false, keep: 1, closeTimeout })
    const existing = readdirSync(destination).filter((name) => FINAL_BACKUP.test(name))
    // Best effort: close as soon as publishing shows (the temp record, or a new final name).
    let watcher: ReturnType<typeof watch> | undefined
    const publishing = new Promise<string>((resolve) => {
      watcher = watch(destination, (event, name) => {
        if (name && (/^\.tmp-.*\.json$/.test(name) || (FINAL_BACKUP.test(name) && !existing.includes(name)))) resolve(name)
      })
    })
    const callers = [call(app, { force: true })]
    const seen = await Promise.race([publishing, callers[0].then(() => 'the end of the run', () => 'the end of the run')])
    watcher!.close()
    // Publishing takes several fsyncs and retention four deletions: its first file event comes well before the end.
    t.not(seen, 'the end of the run', `close() came while the run was publishing (on ${seen})`)
    await closeAndCheck(t, { app, closeTimeout, destination, dirs: [dir], before, callers, own: [db] })
    const left = readdirSync(destination).filter((name) => FINAL_BACKUP.test(name))
    t.ok(left.length >= 1, `a backup remains (${left.length})`)
    for (const name of left) t.ok(existsSync(join(destination, name.replace(/\.sqlite$/, '.json'))), `${name} has its record`)
    const [outcome] = await outcomes(callers, 0)
    if ('result' in outcome) t.ok(left.includes(`${outcome.result.id}.sqlite`), 'the backup the caller was given is there')
  })
}

t.test('close() while now() callers wait for the next run: they are told at once, the run in flight finishes', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { journalMode: 'delete' })
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const before = await baseline()
  const closeTimeout = 5000
  const app = await startApp(t, { database: path, destination, interval: false, closeTimeout })
  db.exec('BEGIN EXCLUSIVE')
  const inFlight = call(app)
  await waitFor(() => threadCount() > before.threads)
  const waiting = Array.from({ length: 5 }, (_, i) => call(app, { force: i % 2 === 0 }))
  const told: number[] = []
  const closeStarted = Date.now()
  for (const caller of waiting) caller.catch(() => told.push(Date.now() - closeStarted))

  const closing = closeAndCheck(t, { app, closeTimeout, destination, dirs: [dir], before, callers: [inFlight, ...waiting], own: [db] })
  // Told while the run in flight is still held up by the lock (released only below): they did not wait for it.
  await waitFor(() => told.length === waiting.length, 10_000)
  t.equal(app.backup.status().running, true, 'the waiting callers were rejected while the run in flight goes on')
  await delay(200)
  db.exec('COMMIT')
  await closing
  const [outcome] = await outcomes([inFlight], 0)
  t.ok('result' in outcome, 'the run in flight finished within closeTimeout and its caller got the backup')
  t.equal(readdirSync(destination).filter((name) => FINAL_BACKUP.test(name)).length, 1, 'one backup, from the run in flight')
})
