import t from 'tap'
import Fastify from 'fastify'
import Database from 'better-sqlite3'
import FakeTimers from '@sinonjs/fake-timers'
import { existsSync, openSync, writeSync, closeSync, writeFileSync, readFileSync, rmSync, statSync, readdirSync, mkdirSync, symlinkSync, linkSync } from 'node:fs'
import { join } from 'node:path'
import backup from 'fastify-sqlite-backup'
import { createDatabase, buildApp, count, startPairWriter, delay } from './helpers'

/** Every table's rows (in rowid order) and the whole schema, as one comparable value. */
function logicalContent (path: string, except: string[] = []): unknown {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    const schema = db.prepare('SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name').all()
    const tables = (db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all() as string[])
      .filter((name) => !except.includes(name))
    // Rows sorted by their whole content, so that WITHOUT ROWID tables compare too.
    const rowsOf = (name: string): string[] => db.prepare(`SELECT * FROM "${name}"`).all().map((row) => JSON.stringify(row)).sort()
    return { schema, rows: Object.fromEntries(tables.map((name) => [name, rowsOf(name)])) }
  } finally {
    db.close()
  }
}

function richDatabase (path: string): void {
  const db = createDatabase(path, { rows: 300 })
  db.exec(`
    CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, bio TEXT);
    CREATE TABLE posts (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES authors(id), title TEXT, body TEXT, cover BLOB, score REAL);
    CREATE INDEX posts_by_author ON posts (author_id, score DESC);
    CREATE TABLE audit (id INTEGER PRIMARY KEY, post_id INTEGER, action TEXT);
    CREATE TRIGGER posts_audit AFTER INSERT ON posts BEGIN INSERT INTO audit (post_id, action) VALUES (new.id, 'insert'); END;
    CREATE VIEW popular AS SELECT title, score FROM posts WHERE score > 0.5;
    CREATE TABLE kv (k TEXT PRIMARY KEY, v ANY) WITHOUT ROWID;
  `)
  const author = db.prepare('INSERT INTO authors (name, bio) VALUES (?, ?)')
  const post = db.prepare('INSERT INTO posts (author_id, title, body, cover, score) VALUES (?, ?, ?, randomblob(?), ?)')
  db.transaction(() => {
    for (let a = 1; a <= 20; a++) author.run(`author ${a}`, a % 3 === 0 ? null : 'x'.repeat(a * 50))
    for (let p = 0; p < 500; p++) post.run(1 + (p % 20), `title ${p}`, 'lorem ipsum '.repeat(p % 40), p % 7 === 0 ? 20_000 : 200, (p % 100) / 100)
    for (let k = 0; k < 50; k++) db.prepare('INSERT INTO kv (k, v) VALUES (?, ?)').run(`key ${k}`, k % 2 ? k : `value ${k}`)
  })()
  db.close()
}

t.test('round trip under a concurrent writer: backup, list, verify, restore, same logical content', async (t) => {
  const dir = t.testdir()
  const source = join(dir, 'app.db')
  richDatabase(source)
  const app = await buildApp(t, { database: source, destination: join(dir, 'backups'), interval: false })
  await startPairWriter(t, source)
  await delay(100)

  const made = await app.backup.now()
  const [listed] = await app.backup.list()
  t.equal(listed.id, made.id)
  t.same(listed.metadata, made.metadata)
  t.equal(listed.good, true)
  const verified = await app.backup.verify()
  t.match(verified, { ok: true, id: made.id, problems: [] })

  const restored = await app.backup.restore(made.id, { to: join(dir, 'restored.db') })
  t.match(restored, { id: made.id, path: join(dir, 'restored.db'), sha256: made.sha256, bytes: made.bytes })
  // Everything but the table the writer keeps filling is identical to the source.
  t.same(logicalContent(restored.path, ['pairs']), logicalContent(source, ['pairs']))
  // The writer's rows form a prefix of the source's: whole transactions, none invented, none reordered.
  const restoredPairs = new Database(restored.path, { readonly: true })
  const sourcePairs = new Database(source, { readonly: true })
  t.teardown(() => { restoredPairs.close(); sourcePairs.close() })
  const rows = restoredPairs.prepare('SELECT id, n FROM pairs ORDER BY id').all() as Array<{ id: number }>
  t.ok(rows.length > 0 && rows.length % 2 === 0, `${rows.length} writer rows, in whole transactions`)
  t.same(sourcePairs.prepare('SELECT id, n FROM pairs WHERE id <= ? ORDER BY id').all(rows[rows.length - 1].id), rows)
  t.equal(restoredPairs.pragma('integrity_check', { simple: true }), 'ok')
  t.equal(statSync(restored.path).mode & 0o777, 0o600)
})

t.test('verify catches a flipped byte, a truncated file and a missing record', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'), { rows: 200 })
  t.teardown(() => db.close())
  const destination = join(dir, 'backups')
  const app = await buildApp(t, { database: db, destination, interval: false, keep: 10 })

  const flipped = await app.backup.now({ force: true })
  const truncated = await app.backup.now({ force: true })
  const orphan = await app.backup.now({ force: true })
  const sound = await app.backup.now({ force: true })

  const fd = openSync(flipped.path, 'r+')
  const offset = 4096 * 20 + 1234
  const byte = Buffer.alloc(1)
  require('node:fs').readSync(fd, byte, 0, 1, offset)
  writeSync(fd, Buffer.from([byte[0] ^ 0x01]), 0, 1, offset)
  closeSync(fd)
  writeFileSync(truncated.path, readFileSync(truncated.path).subarray(0, truncated.bytes - 4096))
  rmSync(join(destination, `${orphan.id}.json`))

  t.match(await app.backup.verify(flipped.id), { ok: false, problems: [/sha256/] }, 'one flipped bit')
  t.match(await app.backup.verify(truncated.id), { ok: false, problems: [/size/, /sha256/] })
  t.match(await app.backup.verify(orphan.id), { ok: false, problems: [/record is missing/] })
  t.match(await app.backup.verify(sound.id), { ok: true })
  t.match(app.backup.status().lastVerify, { ok: true, id: sound.id })
  const orphanInfo = (await app.backup.list()).find((entry) => entry.id === orphan.id)
  t.match(orphanInfo, { metadata: null, good: true })

  await t.rejects(app.backup.restore(flipped.id, { to: join(dir, 'r.db') }), { code: 'FST_SQLITE_BACKUP_VERIFY_FAILED' })
  t.notOk(existsSync(join(dir, 'r.db')), 'a bad backup restores nothing')
  t.same(readdirSync(dir).filter((name) => name.includes('restore')), [], 'and leaves no temp file')
})

t.test('ids from the outside cannot escape the destination', async (t) => {
  const dir = t.testdir({ 'secret.json': '{}', 'secret.sqlite': 'x' })
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), interval: false })
  await app.backup.now()
  for (const id of ['../secret', '/etc/passwd', 'x\0y', '20260101T000000000Z-0a1b2c3d/../../secret', '', 42, null]) {
    await t.rejects(app.backup.verify(id as string), { code: 'FST_SQLITE_BACKUP_INVALID_ID' }, `verify(${JSON.stringify(id)})`)
    await t.rejects(app.backup.restore(id as string, { to: join(dir, 'out.db') }), { code: 'FST_SQLITE_BACKUP_INVALID_ID' })
  }
  await t.rejects(app.backup.verify('20260101T000000000Z-0a1b2c3d'), { code: 'FST_SQLITE_BACKUP_NOT_FOUND', statusCode: 404 })
})

t.test('restore refuses to overwrite without force, never touches the live database, removes stale -wal', async (t) => {
  const dir = t.testdir()
  const live = join(dir, 'app.db')
  const db = createDatabase(live, { rows: 10 })
  t.teardown(() => db.close())
  const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), interval: false })
  const first = await app.backup.now()
  db.prepare('INSERT INTO items (body) VALUES (?)').run(Buffer.from('later'))
  const second = await app.backup.now()

  await t.rejects(app.backup.restore(first.id, { to: live, force: true }), { code: 'FST_SQLITE_BACKUP_RESTORE_REFUSED', message: /being backed up/ })
  t.equal(count(live, 'items'), 11, 'the live database is untouched')

  const target = join(dir, 'copy.db')
  writeFileSync(target, 'precious')
  await t.rejects(app.backup.restore(first.id, { to: target }), { code: 'FST_SQLITE_BACKUP_RESTORE_REFUSED', statusCode: 409 })
  t.equal(readFileSync(target, 'utf8'), 'precious')

  writeFileSync(`${target}-wal`, 'a stale log from the file this restore replaces')
  writeFileSync(`${target}-shm`, 'stale')
  await app.backup.restore(first.id, { to: target, force: true })
  t.notOk(existsSync(`${target}-wal`), 'stale -wal removed')
  t.notOk(existsSync(`${target}-shm`), 'stale -shm removed')
  t.equal(count(target, 'items'), 10)

  // By time: the newest backup taken at or before the given moment.
  await app.backup.restore({ at: new Date(second.metadata.createdAt) }, { to: target, force: true })
  t.equal(count(target, 'items'), 11)
  await app.backup.restore({ at: new Date(Date.parse(second.metadata.createdAt) - 1).toISOString() }, { to: target, force: true })
  t.equal(count(target, 'items'), 10)
  await t.rejects(app.backup.restore({ at: new Date(0) }, { to: target, force: true }), { code: 'FST_SQLITE_BACKUP_NOT_FOUND' })
  await t.rejects(app.backup.restore({ at: 'not a time' }, { to: target }), { code: 'FST_SQLITE_BACKUP_INVALID_OPTION' })
  await t.rejects(app.backup.restore(first.id, {} as never), { code: 'FST_SQLITE_BACKUP_INVALID_OPTION' })
})

// A deploy layout: the app opens releases/r1/app.db, and `current` is a symlink to releases/r1. Every alias below is
// a path string other than the live one that names the live database (or one of its files) all the same.
const ALIASES: Array<[string, (dir: string, live: string) => string]> = [
  ['through a symlinked directory', (dir) => join(dir, 'current', 'app.db')],
  ['a symlink to the file', (dir, live) => { symlinkSync(live, join(dir, 'link.db')); return join(dir, 'link.db') }],
  ['a hard link', (dir, live) => { linkSync(live, join(dir, 'hard.db')); return join(dir, 'hard.db') }],
  ['its -wal file, through the symlinked directory', (dir) => join(dir, 'current', 'app.db-wal')],
  ['a path to where the live file was, deleted while the app has it open', (dir, live) => { rmSync(live); return join(dir, 'current', 'app.db') }]
]

for (const [name, alias] of ALIASES) {
  t.test(`restore refuses the live database reached by another path: ${name}`, async (t) => {
    const dir = t.testdir()
    const release = join(dir, 'releases', 'r1')
    mkdirSync(release, { recursive: true })
    symlinkSync(join('releases', 'r1'), join(dir, 'current'))
    const live = join(release, 'app.db')
    const db = createDatabase(live, { rows: 10 })
    t.teardown(() => db.close())
    const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), interval: false })
    const made = await app.backup.now()
    // Committed after the backup and still only in the -wal: a restore over the live files would lose it.
    db.prepare('INSERT INTO items (body) VALUES (?)').run(Buffer.from('only in the wal'))
    const to = alias(dir, live)
    const identity = (path: string): string => { const stats = statSync(path, { throwIfNoEntry: false }); return stats ? `${stats.dev}:${stats.ino}` : 'missing' }
    const walBefore = readFileSync(`${live}-wal`)
    const filesBefore = [`${live}-wal`, `${live}-shm`].map(identity)

    await t.rejects(app.backup.restore(made.id, { to, force: true }), {
      code: 'FST_SQLITE_BACKUP_RESTORE_REFUSED',
      message: `the database being backed up "${live}", reached by another path (a symlink, a hard link or a symlinked directory), which is open`
    })

    t.same([`${live}-wal`, `${live}-shm`].map(identity), filesBefore, 'the live -wal and -shm are the same files')
    t.ok(readFileSync(`${live}-wal`).equals(walBefore), 'the live -wal is unchanged')
    t.same(readdirSync(release).filter((entry) => entry.includes('restore')), [], 'no temp file left beside the live database')
    t.equal((db.prepare('SELECT count(*) AS n FROM items').get() as { n: number }).n, 11, 'the app reads every row, the one in the -wal too')
    db.prepare('INSERT INTO items (body) VALUES (?)').run(Buffer.from('after'))
    t.equal((db.prepare('SELECT count(*) AS n FROM items').get() as { n: number }).n, 12, 'and its connection still writes')
    if (existsSync(live)) t.equal(count(live, 'items'), 12, 'another connection sees the same database')
  })
}

t.test('restoreIfMissing puts the newest good backup in place before the app opens it', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  createDatabase(path, { rows: 42 }).close()
  const first = await buildApp(t, { database: path, destination, interval: false })
  await first.backup.now()
  await first.close()
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${path}${suffix}`, { force: true })

  const lines: Array<{ msg: string }> = []
  const app = Fastify({ logger: { stream: { write: (line: string) => lines.push(JSON.parse(line)) } } })
  t.teardown(() => app.close())
  await app.register(backup, { database: path, destination, interval: false, restoreIfMissing: true })
  t.equal(count(path, 'items'), 42, 'restored at registration')
  t.ok(lines.some((line) => /restored it from the newest good backup/.test(line.msg)), 'and logged')
  await app.ready()

  // Nothing to restore from: a clear error.
  const empty = Fastify()
  t.teardown(() => empty.close())
  empty.register(backup, { database: join(dir, 'other.db'), destination: join(dir, 'empty'), restoreIfMissing: true })
  await t.rejects(async () => { await empty.ready() }, { code: 'FST_SQLITE_BACKUP_INVALID_DATABASE', message: /no good backup/ })
  const handle = Fastify()
  t.teardown(() => handle.close())
  const db = new Database(path)
  t.teardown(() => db.close())
  handle.register(backup, { database: db, destination, restoreIfMissing: true })
  await t.rejects(async () => { await handle.ready() }, { code: 'FST_SQLITE_BACKUP_INVALID_OPTION', message: /restoreIfMissing/ })
})

t.test('drills: a passing check, a failing SQL check, a failing function', async (t) => {
  for (const [drill, ok] of [
    [true, true],
    ['SELECT count(*) > 0 FROM items', true],
    ['SELECT count(*) > 0 FROM pairs', false],
    [(db: Database.Database) => (db.prepare('SELECT count(*) AS n FROM items').get() as { n: number }).n === 100, true],
    [() => { throw new Error('boom') }, false]
  ] as const) {
    const dir = t.testdir()
    const db = createDatabase(join(dir, 'app.db'))
    t.teardown(() => db.close())
    const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), interval: false, drill })
    const result = await app.backup.now()
    t.equal(result.metadata.drill?.ok, ok, `drill ${String(drill).slice(0, 40)}`)
    const [listed] = await app.backup.list()
    t.equal(listed.good, ok, 'the result is recorded in the metadata')
    t.match(app.backup.status().lastDrill, { id: result.id, ok })
    if (!ok) t.ok(result.metadata.drill!.problems.length > 0)
  }
})

t.test('retention never counts a backup with a failed drill as a kept good one', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  let healthy = true
  const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), interval: false, keep: 2, drill: () => healthy })
  const good1 = await app.backup.now({ force: true })
  const good2 = await app.backup.now({ force: true })
  healthy = false
  const bad1 = await app.backup.now({ force: true })
  const bad2 = await app.backup.now({ force: true })
  const ids = (await app.backup.list()).map((entry) => entry.id)
  t.same(ids, [bad2.id, good2.id, good1.id], 'the two good ones stay; of the bad ones only the newest')
  t.notOk(ids.includes(bad1.id))
  t.match(app.backup.status().kept, { count: 3 })
})

t.test('a keep policy object is applied after each backup: day and month buckets keep what last alone deletes', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  // Backups take their time and id from the clock: a fake Date spreads them over days and months.
  const clock = FakeTimers.install({ toFake: ['Date'] })
  t.teardown(() => clock.uninstall())
  const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), interval: false, keep: { last: 1, daily: 2, monthly: 2, utc: true } })
  const at = async (iso: string): Promise<string> => {
    clock.setSystemTime(new Date(iso))
    return (await app.backup.now({ force: true })).id
  }
  const april10 = await at('2024-04-10T12:00:00Z')
  const april30 = await at('2024-04-30T12:00:00Z')
  const may2Early = await at('2024-05-02T09:00:00Z')
  t.notOk((await app.backup.list()).some((entry) => entry.id === april10), 'April 10 goes: neither among the two newest days nor the newest of April')
  const may2Late = await at('2024-05-02T10:00:00Z')
  const may3 = await at('2024-05-03T08:00:00Z')

  const listed = await app.backup.list()
  t.same(listed.map((entry) => entry.id), [may3, may2Late, april30], 'last 1: May 3; daily 2: May 3 and the newest of May 2; monthly 2: May and the newest of April')
  t.same(listed.map((entry) => entry.createdAt.toISOString()), ['2024-05-03T08:00:00.000Z', '2024-05-02T10:00:00.000Z', '2024-04-30T12:00:00.000Z'])
  t.notOk(listed.some((entry) => entry.id === may2Early), 'an older backup of a day already kept goes')
  t.match(app.backup.status().kept, { count: 3 })
})

t.test('onBackup and onError tell the app about each run', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const db = createDatabase(path, { journalMode: 'delete' })
  t.teardown(() => db.close())
  const published: string[] = []
  const failures: string[] = []
  const app = await buildApp(t, {
    database: path,
    destination: join(dir, 'backups'),
    interval: false,
    timeout: 3000,
    onBackup: (result) => { published.push(result.id) },
    onError: (error) => { failures.push((error as Error & { code: string }).code) }
  })
  const result = await app.backup.now()
  await app.backup.now()
  t.same(published, [result.id], 'called for published backups, not for skips')
  db.exec('BEGIN EXCLUSIVE')
  await t.rejects(app.backup.now({ force: true }))
  db.exec('COMMIT')
  t.same(failures, ['FST_SQLITE_BACKUP_TIMEOUT'])
})

t.test('list() on an empty destination and verify() with nothing to verify', async (t) => {
  const dir = t.testdir()
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const app = await buildApp(t, { database: db, destination: join(dir, 'backups'), interval: false })
  t.same(await app.backup.list(), [])
  await t.rejects(app.backup.verify(), { code: 'FST_SQLITE_BACKUP_NOT_FOUND' })
  await app.close()
  await t.rejects(app.backup.list(), { code: 'FST_SQLITE_BACKUP_CLOSED' })
})
