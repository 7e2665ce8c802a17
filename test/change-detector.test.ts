import t, { type Test } from 'tap'
import Database from 'better-sqlite3'
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { ChangeDetector } from '../lib/change-detector'
import { createDatabase } from './helpers'

function detector (t: Test, path: string): ChangeDetector {
  const created = new ChangeDetector(path)
  t.teardown(() => created.close())
  return created
}

function database (t: Test, path: string, journalMode: 'wal' | 'delete'): Database.Database {
  const db = createDatabase(path, { journalMode, rows: 10 })
  t.teardown(() => db.close())
  return db
}

for (const journalMode of ['wal', 'delete'] as const) {
  t.test(`${journalMode}: the version holds still without commits and moves with each commit of another connection`, async (t) => {
    const path = join(t.testdir(), 'app.db')
    const writer = database(t, path, journalMode)
    const changes = detector(t, path)
    t.equal(changes.journalMode(), journalMode, `journalMode() reports ${journalMode}`)

    const start = changes.version()
    t.type(start, 'string')
    t.equal(changes.version(), start, 'asking again changes nothing')
    writer.prepare('SELECT count(*) FROM items').get()
    t.equal(changes.version(), start, 'reads by another connection change nothing')

    writer.prepare('INSERT INTO pairs (n) VALUES (1)').run()
    const afterOne = changes.version()
    t.type(afterOne, 'string')
    t.not(afterOne, start, 'a commit changes it')
    t.equal(changes.version(), afterOne, 'and it holds still again')

    writer.prepare('INSERT INTO pairs (n) VALUES (2)').run()
    t.not(changes.version(), afterOne, 'so does the next commit')

    // A second reader of its own: a commit is seen by every detector, not consumed by the first one that asks.
    const other = detector(t, path)
    const otherStart = other.version()
    const before = changes.version()
    writer.prepare('INSERT INTO pairs (n) VALUES (3)').run()
    t.not(changes.version(), before)
    t.not(other.version(), otherStart)
  })

  t.test(`${journalMode}: a database replaced by a rename is "unknown" once, then followed`, async (t) => {
    const dir = t.testdir()
    const path = join(dir, 'app.db')
    database(t, path, journalMode)
    const changes = detector(t, path)
    t.type(changes.version(), 'string')

    database(t, join(dir, 'replacement.db'), journalMode).close()
    renameSync(join(dir, 'replacement.db'), path)
    t.equal(changes.version(), undefined, 'the file at the path is another one: the version cannot be told')
    const reopened = changes.version()
    t.type(reopened, 'string', 'then the new file is followed')
    t.equal(changes.version(), reopened)
    t.equal(changes.journalMode(), journalMode, 'the new file\'s journal mode')

    const writer = new Database(path)
    t.teardown(() => writer.close())
    writer.prepare('INSERT INTO pairs (n) VALUES (1)').run()
    t.not(changes.version(), reopened, 'a commit to the new file changes the version')
  })

  t.test(`${journalMode}: a version read on the replaced file never equals one read before, however far the new file's data_version climbs`, async (t) => {
    const dir = t.testdir()
    const path = join(dir, 'app.db')
    const writer = database(t, path, journalMode)
    const changes = detector(t, path)
    // Five commits, each seen: the connection's data_version has climbed from 1 to 6.
    for (let n = 0; n < 5; n++) {
      writer.prepare('INSERT INTO pairs (n) VALUES (?)').run(n)
      changes.version()
    }
    const atBackup = changes.version()
    t.not(atBackup, undefined, 'the version a backup would be taken at')

    database(t, join(dir, 'replacement.db'), journalMode).close()
    renameSync(join(dir, 'replacement.db'), path)
    // A run here reads "unknown" and reopens; if it then fails, the caller still holds atBackup.
    t.equal(changes.version(), undefined, 'replaced: unknown, and reopened on the new file')
    // The new connection starts over at 1 and climbs with each commit it sees, past the old value.
    const replacementWriter = new Database(path)
    t.teardown(() => replacementWriter.close())
    const seen = [changes.version()]
    for (let n = 0; n < 10; n++) {
      replacementWriter.prepare('INSERT INTO pairs (n) VALUES (?)').run(n)
      seen.push(changes.version())
    }
    t.equal(new Set(seen).size, seen.length, 'each commit to the new file changes the version')
    t.notOk(seen.includes(atBackup), `no version of the new file matches the one read on the old file (${String(atBackup)}; new file: ${seen.join(', ')})`)
  })
}

t.test('a database that is gone stays "unknown" until a file is back at its path', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  database(t, path, 'delete').close()
  const changes = detector(t, path)
  t.type(changes.version(), 'string')
  rmSync(path)
  t.equal(changes.version(), undefined)
  t.equal(changes.version(), undefined, 'still unknown')
  database(t, path, 'delete')
  t.equal(changes.version(), undefined, 'a new file: unknown once')
  t.type(changes.version(), 'string', 'then followed')
  t.throws(() => new ChangeDetector(join(dir, 'missing.db')), 'a detector needs an existing database to start')
})

t.test('delete journal: "unknown" while another connection holds an exclusive lock', async (t) => {
  const path = join(t.testdir(), 'app.db')
  const writer = database(t, path, 'delete')
  const changes = detector(t, path)
  const start = changes.version()
  t.type(start, 'string')

  writer.exec('BEGIN EXCLUSIVE')
  const asked = performance.now()
  t.equal(changes.version(), undefined, 'locked before any write: unknown')
  const waited = performance.now() - asked
  t.ok(waited < 500, `version() does not wait for the lock (${waited.toFixed(1)} ms)`)
  writer.prepare('INSERT INTO pairs (n) VALUES (1)').run()
  t.equal(changes.version(), undefined, 'locked with a write in progress: unknown')
  writer.exec('COMMIT')
  const after = changes.version()
  t.type(after, 'string', 'a version again once the lock is gone')
  t.not(after, start, 'and the commit shows')

  writer.exec('BEGIN EXCLUSIVE')
  t.equal(changes.version(), undefined)
  writer.exec('ROLLBACK')
  t.equal(changes.version(), after, 'a rolled-back transaction changes nothing')
})

t.test('wal: an exclusive transaction does not block the detector, and its write counts only once committed', async (t) => {
  const path = join(t.testdir(), 'app.db')
  const writer = database(t, path, 'wal')
  const changes = detector(t, path)
  const start = changes.version()

  writer.exec('BEGIN EXCLUSIVE')
  t.equal(changes.version(), start, 'readers go on in WAL mode')
  writer.prepare('INSERT INTO pairs (n) VALUES (1)').run()
  t.equal(changes.version(), start, 'an uncommitted write is not a change')
  writer.exec('COMMIT')
  t.not(changes.version(), start, 'committed: a change')
})

t.test('delete journal: a writer that crashed mid-transaction leaves a hot journal: "unknown" until it is rolled back', async (t) => {
  const path = join(t.testdir(), 'app.db')
  createDatabase(path, { journalMode: 'delete', rows: 300 }).close()
  const changes = detector(t, path)
  const start = changes.version()
  t.type(start, 'string')

  // Another process rewrites rows inside an exclusive transaction, then dies by SIGKILL.
  const holder = fork(join(__dirname, 'fixtures', 'lock-holder.js'), [path], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  t.teardown(() => { holder.kill('SIGKILL') })
  t.equal((await once(holder, 'message'))[0], 'locked')
  t.equal(changes.version(), undefined, 'while the other process holds the lock')
  holder.kill('SIGKILL')
  await once(holder, 'exit')
  t.ok(existsSync(`${path}-journal`), 'the crash left a hot journal')
  t.equal(changes.version(), undefined, 'a read-only connection cannot roll a hot journal back: unknown')
  t.equal(changes.version(), undefined, 'still unknown')

  // Any read-write connection rolls it back; the database is then what it was before the transaction.
  const recovering = new Database(path)
  recovering.prepare('SELECT count(*) FROM items').get()
  recovering.close()
  t.notOk(existsSync(`${path}-journal`), 'rolled back')
  t.equal(changes.version(), start, 'the rolled-back transaction never committed: the version is the one from before')
})
