import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import Database from 'better-sqlite3'
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import {
  existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, statSync, symlinkSync,
  writeFileSync, readFileSync
} from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import backup, { type FastifySqliteBackupOptions } from 'fastify-sqlite-backup'
import {
  createDatabase, count, integrityCheck, backupFiles, delay, sha256File, tempFiles, mountTmpfs, remount,
  testdirAfterTeardowns, watchSnapshots, LEASE_FILE
} from './helpers'

/** The app of these tests: the plugin, a route that backs up, and one that does not touch it. */
async function buildServingApp (t: Test, options: FastifySqliteBackupOptions): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(backup, options)
  app.get('/ping', async () => 'pong')
  app.post('/backup', async () => {
    const { id, path, skipped } = await app.backup.now()
    return { id, path, skipped }
  })
  await app.ready()
  return app
}

async function pings (t: Test, app: FastifyInstance, when: string): Promise<void> {
  const response = await app.inject('/ping')
  t.equal(response.body, 'pong', `the app serves requests ${when}`)
}

/**
 * Mounts a tmpfs on `dir`. Without the right to mount, the test says so and fails under CI (where it must run) or
 * is skipped elsewhere. Resolves to whether it is mounted.
 */
function mountOrSkip (t: Test, dir: string, size: string): boolean {
  const reason = mountTmpfs(t, dir, size)
  if (reason === null) return true
  const message = `cannot mount a tmpfs on ${dir} (${reason}): this test needs root (or CAP_SYS_ADMIN) to inject the fault`
  if (process.env.CI) t.fail(message)
  else t.pass('the fault cannot be injected here', { skip: message })
  return false
}

/**
 * A database of `rows` rows of 1 KB (closed when the test ends) and a destination on a tmpfs of `size`, to fill up
 * or make read-only; undefined where no tmpfs can be mounted (see mountOrSkip).
 */
function databaseWithTmpfsDestination (t: Test, rows: number, size: string): { db: Database.Database, destination: string } | undefined {
  const dir = testdirAfterTeardowns(t)
  const db = createDatabase(join(dir, 'app.db'), { rows })
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  mkdirSync(destination)
  return mountOrSkip(t, destination, size) ? { db, destination } : undefined
}

/** Another process that holds an exclusive write lock on the database (fixtures/lock-holder.js). */
async function startLockHolder (t: Test, path: string): Promise<ChildProcess> {
  const child = fork(join(__dirname, 'fixtures', 'lock-holder.js'), [path], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  t.teardown(() => { child.kill('SIGKILL') })
  const [message] = await Promise.race([
    once(child, 'message'),
    once(child, 'exit').then(([code]) => { throw new Error(`the lock holder exited (code ${code})`) })
  ])
  if (message !== 'locked') throw new Error(`unexpected message from the lock holder: ${message}`)
  return child
}

/** A digest of every row of `items`, to tell databases (or states of one) apart. */
function itemsDigest (path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    const hash = createHash('sha256')
    for (const row of db.prepare('SELECT id, body FROM items ORDER BY id').iterate() as Iterable<{ id: number, body: Buffer }>) {
      hash.update(String(row.id)).update(row.body)
    }
    return hash.digest('hex')
  } finally {
    db.close()
  }
}

function marker (path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    return (db.prepare('SELECT name FROM marker').get() as { name: string }).name
  } finally {
    db.close()
  }
}

/** The destination's entries, without the plugin's lease files. */
function entries (dir: string): string[] {
  return readdirSync(dir).filter((name) => !LEASE_FILE.test(name)).sort()
}

function settle<T> (promise: Promise<T>): Promise<{ value?: T, error?: Error & { code?: string } }> {
  return promise.then((value) => ({ value }), (error: Error) => ({ error }))
}

t.test('a full destination disk fails the run with a coded error; nothing is published or deleted; with space, the next run works', async (t) => {
  // About 600 KB: one backup fits in a 1 MiB tmpfs, two do not.
  const setup = databaseWithTmpfsDestination(t, 550, '1m')
  if (setup === undefined) return
  const { db, destination } = setup
  const app = await buildServingApp(t, { database: db, destination, interval: false, keep: 1 })

  const first = await app.backup.now()
  t.ok(first.bytes > 512 * 1024 && first.bytes < 1024 * 1024, `one backup (${first.bytes} bytes) fits, two do not`)
  const firstHash = sha256File(first.path)
  db.prepare('INSERT INTO pairs (n) VALUES (1)').run()

  const failing = settle(app.backup.now())
  await pings(t, app, 'while the disk fills up')
  const { error } = await failing
  t.ok(error, 'the run fails')
  t.comment(`disk full: ${error?.code}: ${error?.message}`)
  t.match(error, { code: 'FST_SQLITE_BACKUP_SNAPSHOT_FAILED', message: /SQLITE_FULL/ }, 'with the documented code, naming SQLITE_FULL')
  await pings(t, app, 'after the failure')
  t.same(entries(destination), [`${first.id}.json`, `${first.id}.sqlite`], 'no partial or temp file; retention deleted nothing')
  t.equal(sha256File(first.path), firstHash, 'the first backup is byte-identical')
  t.match(app.backup.status(), { failed: 1, published: 1, lastError: { code: 'FST_SQLITE_BACKUP_SNAPSHOT_FAILED', message: /SQLITE_FULL/ } })

  remount(destination, 'remount,size=4m')
  const next = await app.backup.now()
  t.equal(next.skipped, false, 'with space again, the next run publishes')
  t.equal(integrityCheck(next.path), 'ok')
  t.equal(count(next.path, 'pairs'), 1, 'holding the row committed before the failed run')
  t.same(backupFiles(destination), [next.path], 'and retention now removes the older one (keep: 1)')
})

t.test('a full disk under a large snapshot, copied by the snapshot thread\'s helper, fails the same way and leaves nothing', async (t) => {
  // About 40 MB: checked beside its copy, which the helper thread makes (check-beside-copy.ts); 8 MiB do not hold it.
  const setup = databaseWithTmpfsDestination(t, 40_000, '8m')
  if (setup === undefined) return
  const { db, destination } = setup
  const app = await buildServingApp(t, { database: db, destination, interval: false })
  const { error } = await settle(app.backup.now())
  t.match(error, { code: 'FST_SQLITE_BACKUP_SNAPSHOT_FAILED', message: /SQLITE_FULL/ }, 'with the documented code, naming SQLITE_FULL')
  t.same(entries(destination), [], 'no partial or temp file')
  t.match(app.backup.status(), { failed: 1, published: 0 })
})

t.test('a write transaction held by another process (rollback journal) times the run out with a coded error; the next run works', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  createDatabase(path, { journalMode: 'delete', rows: 300 }).close()
  const before = itemsDigest(path)
  const destination = join(dir, 'backups')
  // Long enough for the next run to finish on a loaded machine (it runs under the same timeout).
  const timeout = 4000
  const app = await buildServingApp(t, { database: path, destination, interval: false, timeout })
  const holder = await startLockHolder(t, path)

  const started = Date.now()
  const failing = settle(app.backup.now())
  await pings(t, app, 'while the run waits for the lock')
  const { error } = await failing
  const took = Date.now() - started
  t.match(error, { code: 'FST_SQLITE_BACKUP_TIMEOUT', statusCode: 504 })
  // Not before the timeout; the upper bound only shows that it did not hang (loose: CI machines are shared).
  t.ok(took >= timeout - 50 && took < timeout + 15_000, `it gave up after about timeout (${took} ms for ${timeout} ms)`)
  t.same(entries(destination), [], 'no temp file left')
  t.match(app.backup.status(), { running: false, failed: 1, lastError: { code: 'FST_SQLITE_BACKUP_TIMEOUT' } })

  holder.send('rollback')
  t.same(await once(holder, 'exit'), [0, null], 'the other process ends its transaction and exits')
  const next = await app.backup.now()
  t.equal(next.skipped, false)
  t.equal(integrityCheck(next.path), 'ok')
  t.equal(itemsDigest(next.path), before, 'the next run backs up the committed state')
})

t.test('a writer process that crashed mid-transaction (hot journal): the snapshot recovers the database and backs up the last committed state', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  createDatabase(path, { journalMode: 'delete', rows: 300 }).close()
  const before = itemsDigest(path)
  const destination = join(dir, 'backups')
  const app = await buildServingApp(t, { database: path, destination, interval: false, timeout: 5000 })
  const holder = await startLockHolder(t, path)
  holder.kill('SIGKILL')
  await once(holder, 'exit')
  t.ok(existsSync(`${path}-journal`), 'the crashed writer left a hot journal')

  const result = await app.backup.now()
  t.equal(integrityCheck(result.path), 'ok')
  t.equal(itemsDigest(result.path), before, 'the last committed state, none of the crashed writes')
  t.notOk(existsSync(`${path}-journal`), 'the journal was rolled back, as any connection would')
  t.same(tempFiles(destination), [], 'no temp file left')
  await pings(t, app, 'after recovering a hot journal')
})

t.test('a database file deleted while the app runs never yields a crash, a hang or a partial file', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  createDatabase(path, { rows: 200 }).close()
  const destination = join(dir, 'backups')
  const app = await buildServingApp(t, { database: path, destination, interval: false })
  const first = await app.backup.now()
  const firstHash = sha256File(first.path)
  rmSync(path)

  for (const force of [true, false]) {
    // Never "skipped": a missing database is a failure to report, not a database without changes.
    const { error } = await settle(app.backup.now({ force }))
    t.match(error, { code: 'FST_SQLITE_BACKUP_SNAPSHOT_FAILED', message: /SQLITE_CANTOPEN/ }, `force: ${force}: a coded error`)
    t.same(tempFiles(destination), [], 'no temp file left')
  }
  t.equal(sha256File(first.path), firstHash, 'the earlier backup is untouched')
  await pings(t, app, 'without its database file')
})

// Two databases told apart by a marker row and their rows.
function createMarkedDatabase (path: string, name: string, rows: number, journalMode: 'wal' | 'delete' = 'wal'): void {
  const db = createDatabase(path, { rows, journalMode })
  db.exec('CREATE TABLE marker (name TEXT)')
  db.prepare('INSERT INTO marker VALUES (?)').run(name)
  db.close()
}

for (const force of [true, false]) {
  t.test(`a database file replaced by another (renamed over it) is backed up with the new content, never a mix (force: ${force})`, async (t) => {
    const dir = t.testdir()
    const path = join(dir, 'app.db')
    createMarkedDatabase(path, 'old', 300)
    createMarkedDatabase(join(dir, 'other.db'), 'new', 120)
    const replacement = itemsDigest(join(dir, 'other.db'))
    const destination = join(dir, 'backups')
    const app = await buildServingApp(t, { database: path, destination, interval: false })
    const first = await app.backup.now()
    t.equal(marker(first.path), 'old')

    renameSync(join(dir, 'other.db'), path)
    const value = await app.backup.now({ force })
    t.equal(value.skipped, false, 'the replacement is noticed even without force')
    t.equal(integrityCheck(value.path), 'ok')
    t.equal(marker(value.path), 'new', 'the backup is of the new database')
    t.equal(count(value.path, 'items'), 120)
    t.equal(itemsDigest(value.path), replacement, 'all of it, and nothing of the old one')
    t.same(tempFiles(destination), [], 'no temp file left')
    t.equal(marker(first.path), 'old', 'the earlier backup is untouched')
  })
}

t.test('a database replaced by a rename, then failed runs: the next run backs up the new file, even once its data_version is back at the last backup\'s', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  // Rollback journal: in WAL mode the old file's -wal, kept by the plugin's open connection, would be replayed
  // onto the new file (a mix that no detector can help).
  createMarkedDatabase(path, 'old', 100, 'delete')
  createMarkedDatabase(join(dir, 'other.db'), 'new', 60, 'delete')
  const destination = join(dir, 'backups')
  const app = await buildServingApp(t, { database: path, destination, interval: false })
  const commit = (n: number): void => {
    const db = new Database(path)
    db.prepare('INSERT INTO pairs (n) VALUES (?)').run(n)
    db.close()
  }
  // Each run reads the detector's version once: with a commit before each, its data_version climbs 1, 2, 3.
  await app.backup.now()
  commit(1)
  await app.backup.now()
  commit(2)
  const last = await app.backup.now()
  t.equal(last.skipped, false)
  t.equal(marker(last.path), 'old')

  renameSync(join(dir, 'other.db'), path)
  // Runs fail before any snapshot while the destination directory is a file (mkdir of it fails). The first one
  // notices the replacement and reopens; the next two each follow a commit to the new file. The new connection's
  // data_version reads 1 at its first read (a commit before it is not counted), then 2.
  renameSync(destination, `${destination}.away`)
  writeFileSync(destination, '')
  for (const n of [undefined, 1, 2]) {
    if (n !== undefined) commit(n)
    const { error } = await settle(app.backup.now())
    t.match(error, { code: 'FST_SQLITE_BACKUP_PUBLISH_FAILED' }, 'the run fails')
  }
  rmSync(destination)
  renameSync(`${destination}.away`, destination)

  // One more commit: the new file's data_version reads 3, the number read when the last backup (of the old file) began.
  commit(3)
  const next = await app.backup.now()
  t.equal(next.skipped, false, 'not skipped: nothing of the new file was backed up yet')
  t.not(next.id, last.id, 'not the old file\'s backup')
  t.equal(marker(next.path), 'new', 'a backup of the new file')
  t.equal(count(next.path, 'pairs'), 3, 'with all of its commits')
  t.equal(marker(last.path), 'old', 'the earlier backup is untouched')
})

t.test('a destination made read-only at run time fails runs with a coded error and deletes nothing; writable again, the next run works', async (t) => {
  const setup = databaseWithTmpfsDestination(t, 100, '8m')
  if (setup === undefined) return
  const { db, destination } = setup
  const app = await buildServingApp(t, { database: db, destination, interval: false, keep: 1 })
  const first = await app.backup.now()
  const firstHash = sha256File(first.path)

  remount(destination, 'remount,ro')
  db.prepare('INSERT INTO pairs (n) VALUES (1)').run()
  const failing = settle(app.backup.now())
  await pings(t, app, 'while the destination is read-only')
  const { error } = await failing
  t.comment(`read-only destination: ${error?.code}: ${error?.message}`)
  t.match(error, { code: 'FST_SQLITE_BACKUP_PUBLISH_FAILED', message: /EROFS|read-only/ })
  t.match(app.backup.status(), { failed: 1, lastError: { code: 'FST_SQLITE_BACKUP_PUBLISH_FAILED' } })
  t.same(entries(destination), [`${first.id}.json`, `${first.id}.sqlite`], 'nothing deleted, nothing left')
  t.equal(sha256File(first.path), firstHash)

  remount(destination, 'remount,rw')
  const next = await app.backup.now()
  t.equal(next.skipped, false)
  t.equal(integrityCheck(next.path), 'ok')
  t.equal(count(next.path, 'pairs'), 1)
  t.same(tempFiles(destination), [])
})

/**
 * Makes the `nth` fsync of the directory `dir` itself fail with EIO, as a failing disk does, for the rest of the
 * test. The plugin flushes files and directories with FileHandle.sync() of node:fs/promises (durable-fs.ts); that
 * method is wrapped here, in this process: the call on any other file or directory goes through unchanged, and
 * the failing call reaches nothing on disk, like an fsync that the kernel fails. `seen` is what the directory
 * held at the moment of the failure.
 */
async function failDirectorySync (t: Test, dir: string, nth: number): Promise<{ seen: string[] | undefined }> {
  const probe = await open(dir, 'r')
  const prototype = Object.getPrototypeOf(probe) as { sync: () => Promise<void> }
  await probe.close()
  const sync = prototype.sync
  const target = realpathSync(dir)
  const state: { seen: string[] | undefined } = { seen: undefined }
  let calls = 0
  prototype.sync = async function (this: { fd: number }) {
    let path: string | undefined
    try {
      path = readlinkSync(`/proc/self/fd/${this.fd}`)
    } catch {}
    if (path === target && ++calls === nth) {
      state.seen = entries(dir)
      throw Object.assign(new Error(`EIO: i/o error, fsync (injected into the fsync of ${dir})`), { code: 'EIO', errno: -5, syscall: 'fsync' })
    }
    return await sync.call(this)
  }
  t.teardown(() => { prototype.sync = sync })
  return state
}

t.test('a failed directory fsync after the backup\'s rename fails the run, yet leaves the published backup with its record', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'), { rows: 50 })
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const app = await buildServingApp(t, { database: db, destination, interval: false })
  // Publishing flushes the directory twice: after the record's rename, then after the backup file's (the commit point).
  const fault = await failDirectorySync(t, destination, 2)
  const { error } = await settle(app.backup.now())
  t.ok(fault.seen, 'the fault was injected')
  const published = (fault.seen ?? []).filter((name) => name.endsWith('.sqlite'))
  t.equal(published.length, 1, 'when the fsync failed, the backup file had its final name')
  const id = published[0]?.replace(/\.sqlite$/, '')
  t.match(error, { code: 'FST_SQLITE_BACKUP_PUBLISH_FAILED', message: /EIO/ }, 'the failure is reported')
  t.comment(`reported: ${error?.message}`)

  t.same(entries(destination), [`${id}.json`, `${id}.sqlite`], 'the backup keeps its record; no temp file is left')
  const [listed] = await app.backup.list()
  t.equal(listed?.id, id)
  t.not(listed?.metadata, null, 'it is listed with its record')
  t.equal((await app.backup.verify(id)).ok, true, 'and verifies')

  // With the fault gone: the destination reported a failure, so the next run publishes again, beside it.
  const next = await app.backup.now()
  t.equal(next.skipped, false)
  t.same(entries(destination), [`${id}.json`, `${id}.sqlite`, `${next.id}.json`, `${next.id}.sqlite`].sort())
  t.same((await app.backup.list()).map((backup) => backup.metadata?.id), [next.id, id], 'both with their records')
})

t.test('1,000 concurrent now() calls through a route, with commits between waves: one snapshot at a time, every call gets a backup holding its commits', { timeout: 120_000 }, async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'), { rows: 200 })
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const app = await buildServingApp(t, { database: db, destination, interval: false, keep: 1000 })
  const insert = db.prepare('INSERT INTO pairs (n) VALUES (?)')

  const snapshots = watchSnapshots(t, destination)

  const waves = 10
  const perWave = 100
  const calls: Array<Promise<{ statusCode: number, body: { path?: string }, committed: number }>> = []
  for (let wave = 0; wave < waves; wave++) {
    const committed = Number(insert.run(wave).lastInsertRowid)
    for (let i = 0; i < perWave; i++) {
      calls.push(app.inject({ method: 'POST', url: '/backup' }).then((response) => ({ statusCode: response.statusCode, body: response.json(), committed })))
    }
    // Mostly the next wave comes at once, while runs are in flight; every third waits for its wave's answers.
    if (wave % 3 === 2) await Promise.all(calls.slice(-perWave))
    else await delay(Math.floor(Math.random() * 40))
  }
  const outcomes = await Promise.all(calls)
  const { most } = await snapshots.stop()

  t.same(outcomes.filter((outcome) => outcome.statusCode !== 200).map((outcome) => outcome.body), [], 'every call resolves with 200')
  const highest = new Map<string, number>()
  for (const { body } of outcomes) {
    if (body.path && !highest.has(body.path)) {
      const copy = new Database(body.path, { readonly: true, fileMustExist: true })
      highest.set(body.path, (copy.prepare('SELECT coalesce(max(id), 0) AS id FROM pairs').get() as { id: number }).id)
      copy.close()
    }
  }
  const missing = outcomes.filter(({ body, committed }) => !(highest.get(body.path!)! >= committed))
  t.equal(missing.length, 0, 'each backup holds every row committed before its request was sent')
  for (const path of highest.keys()) t.equal(integrityCheck(path), 'ok', `${path} passes integrity_check`)
  const { published, skipped, failed } = app.backup.status()
  t.comment(`${outcomes.length} calls shared ${published + skipped} runs (${published} published, ${skipped} skipped); at most ${most} snapshot at a time`)
  t.equal(failed, 0)
  t.ok(published + skipped <= 2 * waves, `calls share runs: ${published + skipped} runs for ${outcomes.length} calls`)
  t.equal(backupFiles(destination).length, published)
})

t.test('symlinks planted in the destination never make the plugin write or delete outside it', async (t) => {
  const dir = t.testdir({
    outside: { 'a.txt': 'not a backup A', 'b.txt': 'not a backup B', 'c.txt': 'not a backup C', 'd.txt': 'not a backup D' }
  })
  const outside = join(dir, 'outside')
  const targets = readdirSync(outside).map((name) => join(outside, name))
  const snapshot = (): Array<{ path: string, sha256: string, mtimeMs: number, size: number }> =>
    targets.map((path) => ({ path, sha256: sha256File(path), mtimeMs: statSync(path).mtimeMs, size: statSync(path).size }))
  const original = snapshot()

  const db = createDatabase(join(dir, 'app.db'), { rows: 50 })
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  mkdirSync(destination, { mode: 0o700 })
  const deadPid = 2 ** 22 + 1 // above Linux's pid_max: never a live process
  const oldest = '20000101T000000000Z-00000000'
  const newest = '29991231T235959999Z-ffffffff'
  // Final names that retention will delete (the oldest id) or keep (the newest), and a dead process's temp name.
  symlinkSync(join(outside, 'a.txt'), join(destination, `${oldest}.sqlite`))
  symlinkSync(join(outside, 'b.txt'), join(destination, `${oldest}.json`))
  symlinkSync(join(outside, 'c.txt'), join(destination, `.tmp-${deadPid}-20000101T000000000Z-00000001.sqlite`))
  symlinkSync(join(outside, 'd.txt'), join(destination, `${newest}.sqlite`))

  const app = await buildServingApp(t, { database: db, destination, interval: false, keep: 2 })
  const results = []
  for (let i = 0; i < 5; i++) {
    db.prepare('INSERT INTO pairs (n) VALUES (?)').run(i)
    results.push(await app.backup.now())
  }
  t.same(snapshot(), original, 'no file outside the destination was modified, truncated or replaced')
  t.same(readdirSync(outside).sort(), ['a.txt', 'b.txt', 'c.txt', 'd.txt'], 'or deleted')
  const last = results[results.length - 1]
  t.ok(lstatSync(last.path).isFile(), 'backups are regular files')
  t.equal(integrityCheck(last.path), 'ok')
  t.equal(count(last.path, 'pairs'), 5)
  t.notOk(existsSync(join(destination, `${oldest}.sqlite`)), 'retention removed the oldest link itself, not its target')
  t.same(tempFiles(destination), [])
})

t.test('a destination that is a symlink to a directory is followed: backups land in the directory it points to', async (t) => {
  const dir = t.testdir({ elsewhere: {}, 'outside.txt': 'untouched' })
  const db = createDatabase(join(dir, 'app.db'), { rows: 20 })
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  symlinkSync(join(dir, 'elsewhere'), destination)
  const app = await buildServingApp(t, { database: db, destination, interval: false, keep: 2 })
  const ids = []
  for (let i = 0; i < 5; i++) ids.push((await app.backup.now({ force: true })).id)
  t.ok(lstatSync(destination).isSymbolicLink(), 'the link is left as it is')
  t.same(entries(join(dir, 'elsewhere')), ids.slice(3).flatMap((id) => [`${id}.json`, `${id}.sqlite`]), 'the backups and records are in the target directory')
  t.equal(integrityCheck(join(destination, `${ids[4]}.sqlite`)), 'ok')
  t.equal(readFileSync(join(dir, 'outside.txt'), 'utf8'), 'untouched')
})

t.test('backups are 0600 and created directories 0700 even with umask 0', async (t) => {
  const umask = process.umask(0)
  t.teardown(() => { process.umask(umask) })
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'), { rows: 20 })
  t.teardown(() => db.close())
  const top = join(dir, 'a')
  const destination = join(top, 'b', 'backups')
  const created = [top, join(top, 'b'), destination]
  const app = await buildServingApp(t, { database: db, destination, interval: false })
  for (const path of created) t.equal(statSync(path).mode & 0o777, 0o700, `${path} is 0700`)

  const first = await app.backup.now()
  t.equal(statSync(first.path).mode & 0o777, 0o600, 'the backup is 0600')
  t.equal(statSync(join(destination, `${first.id}.json`)).mode & 0o777, 0o600, 'its record is 0600')

  // Removed at run time: created again, just as private.
  rmSync(top, { recursive: true })
  const second = await app.backup.now({ force: true })
  for (const path of created) t.equal(statSync(path).mode & 0o777, 0o700, `${path} is 0700 when created again`)
  t.equal(statSync(second.path).mode & 0o777, 0o600)
  t.equal(statSync(join(destination, `${second.id}.json`)).mode & 0o777, 0o600)
  writeFileSync(join(dir, 'probe'), '')
  t.equal(statSync(join(dir, 'probe')).mode & 0o777, 0o666, 'the umask really was 0 during the test')
})
