import t from 'tap'
import { join } from 'node:path'
import { readdirSync, renameSync, statSync, existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { spawnSync, fork } from 'node:child_process'
import { once } from 'node:events'
import Database from 'better-sqlite3'
import { buildApp, createDatabase, integrityCheck, count, delay, highestPair } from './helpers'
import { leaseScope } from '../lib/leases'

// Continuous backup where the chain is tested: processes taking over from each other, a file replaced under the
// plugin, a steady writer in another process, retention, and the command-line tool.

const CLI = join(__dirname, '..', 'dist', 'cli', 'main.js')

function chains (destination: string): string[] {
  const root = join(destination, 'wal')
  return existsSync(root) ? readdirSync(root) : []
}

function logTable (db: Database.Database): (count: number) => void {
  db.exec('CREATE TABLE IF NOT EXISTS log (n INTEGER PRIMARY KEY)')
  const insert = db.prepare('INSERT INTO log (n) VALUES (NULL)')
  return (rows) => { for (let i = 0; i < rows; i++) insert.run() }
}

t.test('one process ships; when it closes, the next takes over the same chain without a gap', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  const db = createDatabase(path, { rows: 5 })
  t.teardown(() => db.close())
  const write = logTable(db)
  const first = await buildApp(t, { database: path, destination, continuous: true, interval: false })
  const second = await buildApp(t, { database: path, destination, continuous: true, interval: false })
  await first.backup.now()
  write(10)
  await first.backup.sync()
  await t.rejects(second.backup.sync(), { code: 'FST_SQLITE_BACKUP_SYNC_FAILED', message: /another process/ })
  write(3)
  await first.close()
  // The first shipped what was left as it closed; the second takes the lease over at its next look.
  write(4)
  await second.backup.sync()
  t.same(chains(destination).length, 1, 'the same chain, carried on')
  const restored = await second.backup.restore('latest', { to: join(dir, 'restored.db') })
  t.equal(count(restored.path, 'log'), 17, 'every commit, before, during and after the handover')
  t.equal(integrityCheck(restored.path), 'ok')
})

t.test('a database file replaced under the plugin starts a new chain with a base of the new file', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  const db = createDatabase(path, { rows: 5 })
  logTable(db)(3)
  db.close()
  const app = await buildApp(t, { database: path, destination, continuous: true, interval: false })
  await app.backup.now()
  await app.backup.sync()
  // A deploy swaps in another database file (say, restored from elsewhere).
  const other = createDatabase(join(dir, 'other.db'), { rows: 7 })
  logTable(other)(11)
  other.close()
  renameSync(join(dir, 'other.db'), path)
  const firstChain = app.backup.status().lastBackup?.continuous?.chain
  const deadline = Date.now() + 10_000
  while (app.backup.status().lastBackup?.continuous?.chain === firstChain) {
    if (Date.now() > deadline) throw new Error('no new chain with its base within 10 s')
    await delay(50)
  }
  const reopened = new Database(path)
  t.teardown(() => reopened.close())
  logTable(reopened)(2)
  await app.backup.sync()
  const restored = await app.backup.restore('latest', { to: join(dir, 'restored.db') })
  t.equal(count(restored.path, 'items'), 7, 'the new file\'s rows')
  t.equal(count(restored.path, 'log'), 13, 'and its changes since')
})

t.test('under a steady writer in another process the WAL stays bounded and every restore is consistent', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  createDatabase(path, { rows: 10 }).close()
  const limit = 1024 * 1024
  const app = await buildApp(t, { database: path, destination, continuous: { syncInterval: '250ms', walSizeLimit: limit }, interval: false })
  await app.backup.now()
  const writer = fork(join(__dirname, 'fixtures', 'steady-writer.js'), [path], { stdio: 'inherit' })
  t.teardown(() => { writer.kill('SIGKILL') })
  await once(writer, 'message')
  let largest = 0
  const until = Date.now() + 4000
  while (Date.now() < until) {
    largest = Math.max(largest, statSync(`${path}-wal`).size)
    await delay(20)
  }
  writer.kill('SIGKILL')
  await app.backup.sync()
  // The bound: the limit, plus what the writer commits between two of the follower's reads (100 ms).
  t.ok(largest < 2 * limit, `the WAL peaked at ${(largest / 1024 / 1024).toFixed(2)} MiB with a limit of 1 MiB`)
  const restored = await app.backup.restore('latest', { to: join(dir, 'restored.db') })
  const rows = count(restored.path, 'pairs')
  t.equal(rows % 2, 0, `${rows} rows: whole transactions only`)
  t.equal(highestPair(restored.path), highestPair(path), 'every committed pair')
  t.equal(integrityCheck(restored.path), 'ok')
  t.ok(app.backup.status().destinations[0].continuous!.walBytes > 0, 'the status tells the WAL size')
})

t.test('retention deletes the changes no kept snapshot needs; the window starts at the oldest kept one', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  const db = createDatabase(path, { rows: 5 })
  t.teardown(() => db.close())
  const write = logTable(db)
  const app = await buildApp(t, { database: db, destination, continuous: true, interval: false, keep: 2 })
  const marks: Date[] = []
  for (let round = 0; round < 4; round++) {
    await app.backup.now({ force: true })
    write(3)
    await app.backup.sync()
    marks.push(new Date())
    await delay(5)
  }
  const chain = chains(destination)[0]
  const kept = (await app.backup.list()).map((backup) => backup.metadata!.continuous!)
  t.equal(kept.length, 2)
  const left = readdirSync(join(destination, 'wal', chain))
  t.equal(left.length, 2, 'the segments after each kept snapshot, and none before')
  const window = await app.backup.window()
  t.equal(window?.from.getTime(), kept[1].pinnedAt, 'the window starts where the oldest kept snapshot was pinned')
  await t.rejects(app.backup.restore({ at: marks[0] }, { to: join(dir, 'old.db') }), { code: 'FST_SQLITE_BACKUP_NOT_FOUND' })
  const restored = await app.backup.restore({ at: marks[2] }, { to: join(dir, 'mark2.db') })
  t.equal(count(restored.path, 'log'), 9)
})

t.test('the command-line tool lists the window and restores the latest state, or as of --at', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  const db = createDatabase(path, { rows: 5 })
  t.teardown(() => db.close())
  const write = logTable(db)
  const app = await buildApp(t, { database: db, destination, continuous: true, interval: false })
  await app.backup.now()
  write(4)
  await app.backup.sync()
  const mark = new Date()
  await delay(5)
  write(6)
  await app.backup.sync()
  await app.close()

  const list = spawnSync(process.execPath, [CLI, 'list', destination], { encoding: 'utf8' })
  t.equal(list.status, 0, list.stderr)
  t.match(list.stdout, /restorable to any moment from \S+ to \S+/)
  const latest = spawnSync(process.execPath, [CLI, 'restore', destination, '--to', join(dir, 'latest.db')], { encoding: 'utf8' })
  t.equal(latest.status, 0, latest.stderr)
  t.match(latest.stdout, /10 commits replayed/)
  t.equal(count(join(dir, 'latest.db'), 'log'), 10)
  const at = spawnSync(process.execPath, [CLI, 'restore', destination, '--at', mark.toISOString(), '--to', join(dir, 'at.db'), '--json'], { encoding: 'utf8' })
  t.equal(at.status, 0, at.stderr)
  t.equal(JSON.parse(at.stdout).replayed.commits, 4)
  t.equal(count(join(dir, 'at.db'), 'log'), 4)
})

t.test('what a shipping process that died left behind is removed when shipping starts again', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  createDatabase(path, { rows: 5 }).close()
  const scope = leaseScope(path, [destination])
  mkdirSync(join(destination, 'wal', '20261201T000000000Z-0000abcd'), { recursive: true })
  const leftovers = [
    join(destination, `.spool-${scope}-20261201T000000000Z-0000abcd-3-12345.seg`),
    join(destination, 'wal', '20261201T000000000Z-0000abcd', `.tmp-${scope}-12345-0badf00d.seg`)
  ]
  for (const file of leftovers) writeFileSync(file, 'half written')
  const unrelated = join(destination, '.spool-0123456789abcdef-x.seg')
  writeFileSync(unrelated, 'another database\'s')
  await buildApp(t, { database: path, destination, continuous: true, interval: false })
  t.same(leftovers.filter((file) => existsSync(file)), [], 'removed')
  t.ok(existsSync(unrelated), 'another database\'s files are left alone')
})

t.test('two connections taking turns to start the WAL over do not break the chain', async (t) => {
  const dir = t.testdir()
  const path = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  const one = createDatabase(path, { rows: 5 })
  const other = new Database(path)
  t.teardown(() => { one.close(); other.close() })
  for (const db of [one, other]) db.pragma('busy_timeout = 5000')
  const app = await buildApp(t, { database: path, destination, continuous: true, interval: false })
  await app.backup.now()
  // Each connection writes the header of the WAL it starts with its own checkpoint count: the count jumps around.
  for (let round = 0; round < 6; round++) {
    const db = round % 2 === 0 ? one : other
    db.prepare('INSERT INTO pairs (n) VALUES (?)').run(round)
    db.pragma('wal_checkpoint(TRUNCATE)')
    await app.backup.sync()
  }
  t.equal(chains(destination).length, 1, 'one chain throughout')
  const restored = await app.backup.restore('latest', { to: join(dir, 'restored.db') })
  t.equal(count(restored.path, 'pairs'), 6)
})
