import t from 'tap'
import { join } from 'node:path'
import { writeFileSync } from 'node:fs'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import type { S3Destination } from 'fastify-sqlite-backup'
import { createDatabase, buildApp, count, integrityCheck, delay } from './helpers'
import { newBucket, listKeys, gateway, s3Destination, countingProxy, type S3Server } from './s3-server'

// Continuous backup to a real S3-compatible server: segments compressed and encrypted like snapshots, no listing
// per pass, a server that goes away and comes back without a hole in the chain. Run by test/s3.test.ts, in its
// process: tests there stop the server's gateway, which must never happen under these.

export function continuousS3Tests (server: S3Server): void {
  const s3 = (bucket: string, extra: Partial<S3Destination> = {}): S3Destination => s3Destination(server, bucket, extra)

  t.test('changes go to S3 gzipped and encrypted; the app and the command-line tool restore them as of any moment', async (t) => {
    const age = await import('age-encryption')
    const identity = await age.generateIdentity()
    const recipient = await age.identityToRecipient(identity)
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const db = createDatabase(join(dir, 'app.db'), { rows: 20 })
    t.teardown(() => db.close())
    db.exec('CREATE TABLE log (n INTEGER PRIMARY KEY)')
    const insert = db.prepare('INSERT INTO log (n) VALUES (NULL)')
    const write = (rows: number): void => { for (let i = 0; i < rows; i++) insert.run() }
    const app = await buildApp(t, { database: db, destination: [join(dir, 'local'), s3(bucket, { encryption: { identity } })], continuous: true, interval: false })
    await app.backup.now()
    write(12)
    await app.backup.sync()
    const mark = new Date()
    await delay(5)
    write(8)
    await app.backup.sync()

    const keys = await listKeys(server, bucket)
    const segments = keys.filter((key) => key.startsWith('app/wal/'))
    t.ok(segments.length >= 2, `${segments.length} segments stored`)
    t.ok(segments.every((key) => key.endsWith('.seg.gz.age')), 'each compressed, then encrypted')
    t.equal(app.backup.status().destinations[1].continuous?.position?.commit, 20)

    const latest = await app.backup.restore('latest', { to: join(dir, 'latest.db'), destination: 1 })
    t.equal(count(latest.path, 'log'), 20)
    t.equal(integrityCheck(latest.path), 'ok')
    const atMark = await app.backup.restore({ at: mark }, { to: join(dir, 'mark.db'), destination: 1 })
    t.equal(count(atMark.path, 'log'), 12)

    await app.close()
    const keyFile = join(dir, 'key.txt')
    writeFileSync(keyFile, `${identity}\n`, { mode: 0o600 })
    const child = spawn(process.execPath, [join(__dirname, '..', 'dist', 'cli', 'main.js'), 'restore', `s3://${bucket}/app/`, '--endpoint', server.endpoint, '--region', server.region, '--path-style', '--identity-file', keyFile, '--to', join(dir, 'cli.db')], {
      env: { ...process.env, AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey }
    })
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (text: string) => { stderr += text })
    const [code] = await once(child, 'close') as [number]
    t.equal(code, 0, `the command-line tool exits 0${code === 0 ? '' : `: ${stderr}`}`)
    t.equal(count(join(dir, 'cli.db'), 'log'), 20, 'the command-line tool restores the latest state from S3, with the recipient\'s identity')
    t.ok(recipient.startsWith('age1'))
  })

  t.test('a pass with nothing committed sends no request; one with commits sends one PutObject and no listing', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const db = createDatabase(join(dir, 'app.db'))
    t.teardown(() => db.close())
    // Counted at the server's door: segments are uploaded from a thread of their own.
    const { endpoint, take } = await countingProxy(t, server)
    const app = await buildApp(t, { database: db, destination: s3(bucket, { endpoint }), staging: join(dir, 'staging'), continuous: true, interval: false })
    await app.backup.now()
    await app.backup.sync()
    take()
    await app.backup.sync()
    await app.backup.sync()
    t.same(take(), [], 'nothing committed: no request')
    db.prepare('INSERT INTO items (body) VALUES (randomblob(10))').run()
    await app.backup.sync()
    t.same(take(), ['PutObject'], 'one segment, one request')
  })

  t.test('while S3 is unreachable sync() fails naming it; once it is back the chain goes on without a hole', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const db = createDatabase(join(dir, 'app.db'))
    t.teardown(() => db.close())
    db.exec('CREATE TABLE log (n INTEGER PRIMARY KEY)')
    const insert = db.prepare('INSERT INTO log (n) VALUES (NULL)')
    const app = await buildApp(t, { database: db, destination: s3(bucket, { uploadTimeout: '5s' }), staging: join(dir, 'staging'), continuous: true, interval: false })
    await app.backup.now()
    insert.run()
    await app.backup.sync()
    let gatewayUp = true
    t.teardown(() => { if (!gatewayUp) gateway(server, 'gw-start') })
    gateway(server, 'gw-stop')
    gatewayUp = false
    insert.run()
    insert.run()
    await t.rejects(app.backup.sync(), { code: 'FST_SQLITE_BACKUP_SYNC_FAILED', message: new RegExp(`s3://${bucket}/app/`) })
    t.ok(app.backup.status().destinations[0].continuous?.lastError, 'the status tells the failure')
    t.ok(app.backup.status().destinations[0].continuous!.lagMs > 0, 'and the lag grows')
    gateway(server, 'gw-start')
    gatewayUp = true
    insert.run()
    await app.backup.sync()
    t.equal(app.backup.status().destinations[0].continuous?.lastError, null)
    const restored = await app.backup.restore('latest', { to: join(dir, 'restored.db') })
    t.equal(count(restored.path, 'log'), 4, 'every commit, those made while S3 was away included')
  })
}
