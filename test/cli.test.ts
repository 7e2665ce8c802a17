import t, { type Test } from 'tap'
import Database from 'better-sqlite3'
import FakeTimers from '@sinonjs/fake-timers'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync, openSync, readSync, writeSync, closeSync, truncateSync, rmSync, statSync, readdirSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { createDatabase, buildApp, count, integrityCheck, backupFiles } from './helpers'

const CLI = join(__dirname, '..', 'dist', 'cli', 'main.js')
const ID = /^\d{8}T\d{9}Z-[0-9a-f]{8}$/

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs the built tool as a real child process, as cron or an operator would. */
function cli (...args: string[]): Run {
  return cliIn(undefined, ...args)
}

/** The same, in the working directory `cwd`. */
function cliIn (cwd: string | undefined, ...args: string[]): Run {
  const child = spawnSync(process.execPath, [CLI, ...args], { cwd, encoding: 'utf8', timeout: 60_000 })
  return { code: child.status, stdout: child.stdout, stderr: child.stderr }
}

/** Runs with --json and parses stdout, which must hold that one document and nothing else. */
function cliJson (...args: string[]): { code: number | null, value: any, stderr: string } {
  const { code, stdout, stderr } = cli(...args, '--json')
  return { code, value: JSON.parse(stdout), stderr }
}

/** A source database with `rows` rows in `items`, closed so that only the tool touches it. */
function sourceDatabase (path: string, rows: number): void {
  createDatabase(path, { rows }).close()
}

function addRows (path: string, rows: number): void {
  const db = new Database(path)
  const insert = db.prepare('INSERT INTO items (body) VALUES (randomblob(1000))')
  db.transaction(() => { for (let i = 0; i < rows; i++) insert.run() })()
  db.close()
}

/** Every row of `items`, hashed: equal digests mean the same rows with the same contents. */
function rowsDigest (path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    const hash = createHash('sha256')
    for (const row of db.prepare('SELECT id, body FROM items ORDER BY id').iterate() as Iterable<{ id: number, body: Buffer }>) {
      hash.update(`${row.id}:`).update(row.body)
    }
    return hash.digest('hex')
  } finally {
    db.close()
  }
}

function oneLine (t: Test, stderr: string, pattern: RegExp): void {
  t.equal(stderr.split('\n').length, 2, 'exactly one line on stderr')
  t.match(stderr, /^fastify-sqlite-backup: /)
  t.match(stderr, pattern)
}

function backupsIn (dir: string): string[] {
  return backupFiles(dir).map((path) => path.slice(dir.length + 1, -'.sqlite'.length)).reverse()
}

t.test('backup publishes, skips an unchanged database, publishes with --force; list shows them newest first', async (t) => {
  const dir = t.testdir()
  const source = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  sourceDatabase(source, 20)

  const first = cli('backup', source, destination)
  t.equal(first.code, 0, first.stderr)
  t.equal(first.stderr, '')
  const [, id1] = /^published (\S+) \(/.exec(first.stdout)!
  t.match(id1, ID)
  t.equal(count(join(destination, `${id1}.sqlite`), 'items'), 20)

  const unchanged = cliJson('backup', source, destination)
  t.equal(unchanged.code, 0)
  t.match(unchanged.value, { skipped: true, id: id1 }, 'a new process finds the newest backup holds everything')
  t.equal(cli('backup', source, destination).stdout.startsWith('skipped: unchanged since the newest backup'), true)

  addRows(source, 5)
  const changed = cliJson('backup', source, destination)
  t.match(changed.value, { skipped: false, metadata: { bytes: changed.value.bytes } })
  const id2 = changed.value.id
  t.not(id2, id1)
  t.equal(count(changed.value.path, 'items'), 25)

  const forced = cliJson('backup', source, destination, '--force')
  t.equal(forced.value.skipped, false, '--force publishes an unchanged database')
  const id3 = forced.value.id
  t.same(backupsIn(destination), [id3, id2, id1])

  const list = cli('list', destination)
  t.equal(list.code, 0)
  t.equal(list.stderr, '')
  const lines = list.stdout.trimEnd().split('\n')
  t.match(lines[0], /^ID\s+CREATED\s+SIZE\s+SHA256$/)
  t.same(lines.slice(1, 4).map((line) => line.split(/\s+/)[0]), [id3, id2, id1], 'newest first')
  const metadata = JSON.parse(readFileSync(join(destination, `${id3}.json`), 'utf8'))
  t.same(lines[1].split(/\s+/).slice(0, 5), [id3, metadata.createdAt, ...sizeParts(metadata.bytes), metadata.sha256.slice(0, 12)])
  t.match(lines[4], /^3 backups, \d+\.\d KiB in /)

  const json = cliJson('list', destination)
  t.equal(json.code, 0)
  t.same(json.value.map((backup: { id: string }) => backup.id), [id3, id2, id1])
  t.same(json.value[0], { id: id3, path: join(destination, `${id3}.sqlite`), createdAt: metadata.createdAt, metadata, good: true })
})

// `humanSize` as the list prints it, split on its space: `[ '28.0', 'KiB' ]`.
function sizeParts (bytes: number): string[] {
  return bytes < 1024 ? [String(bytes), 'B'] : [(bytes / 1024).toFixed(1), 'KiB']
}

t.test('backup --keep prunes the oldest backups; a bad --keep is a usage error', async (t) => {
  const dir = t.testdir()
  const source = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  sourceDatabase(source, 5)
  const ids: string[] = []
  for (let i = 0; i < 4; i++) {
    const run = cliJson('backup', source, destination, '--force', '--keep', '2')
    t.equal(run.code, 0)
    ids.push(run.value.id)
  }
  t.same(backupsIn(destination), [ids[3], ids[2]], 'the two newest are kept')
  t.same(readdirSync(destination).filter((name) => name.endsWith('.json')).length, 2, 'records go with their backups')

  for (const keep of ['0', '-1', '1.5', 'ten']) {
    const run = cli('backup', source, destination, '--force', `--keep=${keep}`)
    t.equal(run.code, 2, `--keep ${keep}`)
    t.match(run.stderr, /^fastify-sqlite-backup: invalid --keep/)
  }
  t.equal(backupFiles(destination).length, 2, 'a usage error backs up nothing')
})

t.test('backup without --keep deletes nothing: the app\'s backups, the newest one with a failed drill, all stay', async (t) => {
  const dir = t.testdir()
  const source = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  sourceDatabase(source, 5)
  // The app's own backups, one a day under its own policy, which keeps them all; the last one failed its drill (kept
  // by the app as its newest, for someone to look at). Once the tool's backup is newer, any retention pass (the
  // default keep of 24 included) would delete that one.
  const clock = FakeTimers.install({ toFake: ['Date'] })
  t.teardown(() => clock.uninstall())
  const keep = { last: 2, daily: 30, utc: true }
  const DAYS = 4
  const made: string[] = []
  const app = await buildApp(t, { database: source, destination, interval: false, keep })
  for (let day = 1; day < DAYS; day++) {
    clock.setSystemTime(new Date(Date.UTC(2026, 5, day, 12)))
    made.unshift((await app.backup.now({ force: true })).id)
  }
  await app.close()
  const drilled = await buildApp(t, { database: source, destination, interval: false, keep, drill: 'SELECT 0' })
  clock.setSystemTime(new Date(Date.UTC(2026, 5, DAYS, 12)))
  made.unshift((await drilled.backup.now({ force: true })).id)
  await drilled.close()
  clock.uninstall()
  t.same(backupsIn(destination), made, `the app keeps all ${DAYS}`)

  // Cron runs the tool on the app's destination after a commit, as a crontab line would: no --keep.
  addRows(source, 1)
  const run = cliJson('backup', source, destination)
  t.equal(run.code, 0, run.stderr)
  t.equal(run.value.skipped, false, 'a new backup was published')
  t.same(backupsIn(destination), [run.value.id, ...made], 'every backup of the app is still there')
  t.equal(readdirSync(destination).filter((name) => name.endsWith('.json')).length, DAYS + 1, 'and every record')
  t.equal(cliJson('list', destination).value[1].good, false, 'the one whose drill failed included')
})

t.test('backup to a URL that is not a directory nor a valid s3:// destination: exit 2, and no directory named after it', async (t) => {
  const dir = t.testdir()
  const source = join(dir, 'app.db')
  sourceDatabase(source, 3)
  for (const url of ['s3://Not_A_Bucket/app', 's3://', 'gs://bucket/app', 'https://example.com/backups']) {
    const run = cliIn(dir, 'backup', source, url)
    t.equal(run.code, 2, url)
    t.equal(run.stdout, '')
    t.match(run.stderr.split('\n')[0], url.startsWith('s3://') ? `invalid destination "${url}"` : `unsupported destination "${url}"`)
  }
  const local = cliIn(dir, 'backup', source, join(dir, 'backups'), '--recipient', 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p')
  t.equal(local.code, 2, '--recipient on a directory')
  t.match(local.stderr, /--recipient applies to an s3:\/\/bucket\/prefix destination only/)
  t.same(readdirSync(dir).filter((name) => !name.startsWith('app.db')), [], 'nothing was created')
})

t.test('backup fails with exit 1 and the error code when the database is missing', async (t) => {
  const dir = t.testdir()
  const run = cli('backup', join(dir, 'missing.db'), join(dir, 'backups'))
  t.equal(run.code, 1)
  t.equal(run.stdout, '')
  oneLine(t, run.stderr, /FST_SQLITE_BACKUP_INVALID_DATABASE/)
  t.notOk(existsSync(join(dir, 'backups')), 'a rejected registration creates nothing')
})

t.test('list shows restore drill results and backups whose record is missing', async (t) => {
  const dir = t.testdir()
  const source = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  sourceDatabase(source, 5)

  // Oldest first: retention keeps a backup whose drill failed only while it is the newest.
  const orphan = cliJson('backup', source, destination).value
  const ok = await (await buildApp(t, { database: source, destination, interval: false, drill: true })).backup.now({ force: true })
  const failed = await (await buildApp(t, { database: source, destination, interval: false, drill: 'SELECT 0' })).backup.now({ force: true })
  rmSync(join(destination, `${orphan.id}.json`))

  const list = cli('list', destination)
  t.equal(list.code, 0)
  const lines = list.stdout.split('\n')
  t.match(lines[1], new RegExp(`^${failed.id}\\s.*drill: FAILED$`))
  t.match(lines[2], new RegExp(`^${ok.id}\\s.*drill: ok$`))
  t.match(lines[3], new RegExp(`^${orphan.id}\\s+\\S+\\s+\\?\\s+\\?\\s+RECORD MISSING$`))

  const json = cliJson('list', destination).value
  t.match(json, [
    { id: failed.id, good: false, metadata: { drill: { ok: false } } },
    { id: ok.id, good: true, metadata: { drill: { ok: true, problems: [] } } },
    { id: orphan.id, metadata: null, good: true }
  ])

  // The default restore skips the newest backup, whose drill failed.
  const restored = cliJson('restore', destination, '--to', join(dir, 'restored.db'))
  t.equal(restored.code, 0, restored.stderr)
  t.equal(restored.value.id, ok.id)
})

t.test('list of an empty or missing directory', async (t) => {
  const dir = t.testdir({ empty: {} })
  const empty = cli('list', join(dir, 'empty'))
  t.equal(empty.code, 0)
  t.match(empty.stdout, /^no backups in /)
  t.same(cliJson('list', join(dir, 'empty')).value, [])

  const missing = cli('list', join(dir, 'missing'))
  t.equal(missing.code, 1)
  oneLine(t, missing.stderr, /does not exist/)
})

t.test('verify: ok, and each kind of damage detected with exit 1 and one line on stderr', async (t) => {
  const dir = t.testdir()
  const source = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  sourceDatabase(source, 100)
  for (let i = 0; i < 4; i++) t.equal(cli('backup', source, destination, '--force').code, 0)
  const [sound, flipped, truncated, orphan] = backupsIn(destination)

  const newest = cli('verify', destination)
  t.equal(newest.code, 0)
  t.equal(newest.stdout, `ok ${sound}\n`)
  t.equal(newest.stderr, '')
  t.match(cliJson('verify', destination, sound).value, { ok: true, id: sound, problems: [] })

  // One byte in the page area (page 3 of about 30): the file still opens, only the checksum can tell.
  const file = openSync(join(destination, `${flipped}.sqlite`), 'r+')
  const byte = Buffer.alloc(1)
  readSync(file, byte, 0, 1, 3 * 4096 + 1000)
  writeSync(file, Buffer.from([byte[0] ^ 0xff]), 0, 1, 3 * 4096 + 1000)
  closeSync(file)
  const flip = cli('verify', destination, flipped)
  t.equal(flip.code, 1)
  t.match(flip.stdout, new RegExp(`^FAILED ${flipped}\\n  sha256 is `))
  oneLine(t, flip.stderr, new RegExp(`backup ${flipped} failed verification: sha256 is [0-9a-f]{64}, the record says`))

  const path = join(destination, `${truncated}.sqlite`)
  truncateSync(path, Math.floor(statSync(path).size / 2))
  const cut = cli('verify', destination, truncated)
  t.equal(cut.code, 1)
  oneLine(t, cut.stderr, /failed verification: size is \d+ bytes, the record says \d+; sha256 is /)

  rmSync(join(destination, `${orphan}.json`))
  const noRecord = cliJson('verify', destination, orphan)
  t.equal(noRecord.code, 1)
  t.match(noRecord.value, { ok: false, id: orphan, problems: [/metadata record is missing/] })
  oneLine(t, noRecord.stderr, /metadata record is missing/)

  const all = cli('verify', destination, '--all')
  t.equal(all.code, 1)
  t.match(all.stdout, new RegExp(`^ok ${sound}\\nFAILED ${flipped}\\n`))
  oneLine(t, all.stderr, new RegExp(`3 of 4 backups failed verification: ${flipped}, ${truncated}, ${orphan}$`, 'm'))
  const allJson = cliJson('verify', destination, '--all')
  t.equal(allJson.code, 1)
  t.same(allJson.value.map((result: { ok: boolean }) => result.ok), [true, false, false, false])

  // A damaged backup is never restored.
  const restore = cli('restore', destination, flipped, '--to', join(dir, 'restored.db'))
  t.equal(restore.code, 1)
  oneLine(t, restore.stderr, /FST_SQLITE_BACKUP_VERIFY_FAILED/)
  t.notOk(existsSync(join(dir, 'restored.db')))
  t.same(readdirSync(dir).filter((name) => name.includes('restore')), [], 'no temp file left')

  rmSync(join(destination, `${flipped}.sqlite`))
  rmSync(join(destination, `${truncated}.sqlite`))
  rmSync(join(destination, `${orphan}.sqlite`))
  const remaining = cli('verify', destination, '--all')
  t.equal(remaining.code, 0)
  t.equal(remaining.stdout, `ok ${sound}\n`)
})

t.test('verify of an empty destination fails: there is nothing good to rely on', async (t) => {
  const dir = t.testdir({ backups: {} })
  for (const args of [[], ['--all']]) {
    const run = cli('verify', join(dir, 'backups'), ...args)
    t.equal(run.code, 1)
    oneLine(t, run.stderr, /FST_SQLITE_BACKUP_NOT_FOUND/)
  }
})

t.test('restore by id, by --at and by default, into databases that open with the rows of the source', async (t) => {
  const dir = t.testdir()
  const source = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  sourceDatabase(source, 10)
  const older = cliJson('backup', source, destination).value
  const olderRows = rowsDigest(source)
  addRows(source, 5)
  const newer = cliJson('backup', source, destination).value
  const newerRows = rowsDigest(source)
  t.ok(Date.parse(newer.metadata.createdAt) - Date.parse(older.metadata.createdAt) >= 2, 'two distinct times')

  const byId = cli('restore', destination, older.id, '--to', join(dir, 'by-id.db'))
  t.equal(byId.code, 0, byId.stderr)
  t.equal(byId.stderr, '')
  t.match(byId.stdout, `restored backup ${older.id} (taken ${older.metadata.createdAt}`)
  t.match(byId.stdout, `to ${join(dir, 'by-id.db')}\n`)
  t.match(byId.stdout, 'PRAGMA journal_mode = WAL')
  t.equal(rowsDigest(join(dir, 'by-id.db')), olderRows)

  const between = new Date((Date.parse(older.metadata.createdAt) + Date.parse(newer.metadata.createdAt)) / 2).toISOString()
  const atBetween = cliJson('restore', destination, '--at', between, '--to', join(dir, 'at.db'))
  t.equal(atBetween.code, 0)
  t.match(atBetween.value, { id: older.id, path: join(dir, 'at.db'), bytes: older.bytes, sha256: older.sha256 })
  t.equal(count(join(dir, 'at.db'), 'items'), 10)
  t.equal(cliJson('restore', destination, '--at', newer.metadata.createdAt, '--to', join(dir, 'at-newer.db')).value.id, newer.id, 'at or before')

  const before = cli('restore', destination, '--at', '2000-01-01T00:00:00Z', '--to', join(dir, 'none.db'))
  t.equal(before.code, 1)
  oneLine(t, before.stderr, /FST_SQLITE_BACKUP_NOT_FOUND/)

  const latest = cliJson('restore', destination, '--to', join(dir, 'latest.db'))
  t.equal(latest.code, 0)
  t.equal(latest.value.id, newer.id, 'the newest by default')
  const restored = join(dir, 'latest.db')
  t.equal(rowsDigest(restored), newerRows)
  t.equal(integrityCheck(restored), 'ok')
  const db = new Database(restored)
  t.teardown(() => db.close())
  t.equal(db.pragma('journal_mode', { simple: true }), 'delete', 'as the reminder says')
  db.prepare('INSERT INTO items (body) VALUES (NULL)').run()
  t.equal(count(restored, 'items'), 16, 'the restored database is writable')
})

t.test('restore refuses to overwrite without --force; --force replaces it and its stale -wal and -shm', async (t) => {
  const dir = t.testdir({ 'target.db': 'precious' })
  const source = join(dir, 'app.db')
  const destination = join(dir, 'backups')
  const target = join(dir, 'target.db')
  sourceDatabase(source, 7)
  const backup = cliJson('backup', source, destination).value

  const refused = cli('restore', destination, '--to', target)
  t.equal(refused.code, 1)
  t.equal(refused.stdout, '')
  oneLine(t, refused.stderr, /FST_SQLITE_BACKUP_RESTORE_REFUSED/)
  t.equal(readFileSync(target, 'utf8'), 'precious', 'the target is untouched')
  t.equal(cli('restore', destination, '--to', target, '--json').stdout, '', '--json prints nothing on failure')

  writeFileSync(`${target}-wal`, 'junk from an older database')
  writeFileSync(`${target}-shm`, 'junk')
  const forced = cliJson('restore', destination, backup.id, '--to', target, '--force')
  t.equal(forced.code, 0, forced.stderr)
  t.notOk(existsSync(`${target}-wal`), 'the stale -wal is gone')
  t.notOk(existsSync(`${target}-shm`), 'the stale -shm is gone')
  t.equal(rowsDigest(target), rowsDigest(source))
  t.equal(count(target, 'items'), 7)
})

t.test('an id from the command line can never name a file outside the destination', async (t) => {
  const dir = t.testdir({ backups: {}, 'secret.sqlite': 'not a backup' })
  const destination = join(dir, 'backups')
  const source = join(dir, 'app.db')
  sourceDatabase(source, 3)
  t.equal(cli('backup', source, destination).code, 0)

  for (const id of ['../../etc/passwd', '../secret', '20260101T120000000Z-0a1b2c3d/../../secret']) {
    const restore = cli('restore', destination, id, '--to', join(dir, 'out.db'))
    t.ok(restore.code === 1 || restore.code === 2, `restore ${id}`)
    oneLine(t, restore.stderr, /FST_SQLITE_BACKUP_INVALID_ID/)
    const verify = cli('verify', destination, id)
    t.equal(verify.code, 1, `verify ${id}`)
    oneLine(t, verify.stderr, /FST_SQLITE_BACKUP_INVALID_ID/)
  }
  t.notOk(existsSync(join(dir, 'out.db')))
  t.equal(readFileSync(join(dir, 'secret.sqlite'), 'utf8'), 'not a backup')

  const unknown = cli('restore', destination, '20200101T000000000Z-0a1b2c3d', '--to', join(dir, 'out.db'))
  t.equal(unknown.code, 1)
  oneLine(t, unknown.stderr, /FST_SQLITE_BACKUP_NOT_FOUND/)
})

t.test('usage errors exit 2 with a hint on stderr and nothing on stdout', async (t) => {
  const dir = t.testdir({ backups: {} })
  const destination = join(dir, 'backups')
  const cases: Array<[string[], RegExp]> = [
    [[], /missing command/],
    [['frobnicate', destination], /unknown command "frobnicate"/],
    [['list', destination, '--verbose'], /unknown option '--verbose'/],
    [['--bogus', 'list', destination], /unknown option '--bogus'/],
    [['list'], /missing <dir>/],
    [['list', destination, 'extra'], /unexpected argument "extra"/],
    [['backup', join(dir, 'app.db')], /missing <dir>/],
    [['restore', destination], /missing --to/],
    [['restore', destination, '--to'], /argument missing/],
    [['restore', destination, '--to', join(dir, 'x.db'), '--at', 'yesterday'], /invalid --at "yesterday"/],
    [['restore', destination, '20260101T120000000Z-0a1b2c3d', '--at', '2026-01-01', '--to', join(dir, 'x.db')], /not both/],
    [['verify', destination, '20260101T120000000Z-0a1b2c3d', '--all'], /not both/],
    [['list', destination, '--json=yes'], /does not take an argument/]
  ]
  for (const [args, message] of cases) {
    const run = cli(...args)
    t.equal(run.code, 2, args.join(' '))
    t.equal(run.stdout, '')
    t.match(run.stderr, /^fastify-sqlite-backup: /)
    t.match(run.stderr.split('\n')[0], message)
    t.match(run.stderr, /Run 'fastify-sqlite-backup (\w+ )?--help'/)
  }
  t.notOk(existsSync(join(dir, 'x.db')))
})

t.test('--help on the tool and on each command, --version', async (t) => {
  for (const args of [['--help'], ['-h'], ['--json', '--help']]) {
    const run = cli(...args)
    t.equal(run.code, 0)
    t.equal(run.stderr, '')
    t.match(run.stdout, /^Usage: fastify-sqlite-backup <command>/)
    for (const command of ['list', 'verify', 'restore', 'backup']) t.match(run.stdout, `\n  ${command} <`)
    t.match(run.stdout, /Exit codes:\n {2}0 {2}success\n {2}1 {2}the operation failed[^]*\n {2}2 {2}usage error/)
  }
  for (const command of ['list', 'verify', 'restore', 'backup']) {
    for (const flag of ['--help', '-h']) {
      // Help wins over missing arguments: `restore --help` needs no --to.
      const run = cli(command, flag)
      t.equal(run.code, 0, `${command} ${flag}`)
      t.equal(run.stderr, '')
      t.match(run.stdout, new RegExp(`^Usage: fastify-sqlite-backup ${command} `))
      t.match(run.stdout, /Exit codes:/)
    }
  }
  t.match(cli('restore', '--help').stdout, /--to <path>[^]*--at <time>[^]*--force/)
  t.match(cli('backup', '--help').stdout, /--keep <N>[^]*without --keep, nothing is deleted[^]*s3:\/\/bucket\/prefix[^]*--recipient/)
  t.match(cli('verify', '--help').stdout, /--all/)

  const version = cli('--version')
  t.equal(version.code, 0)
  t.equal(version.stdout, `${JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')).version}\n`)
})
