import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { existsSync, openSync, writeSync, closeSync, writeFileSync, readdirSync, statSync, rmSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { inspect } from 'node:util'
import { performance } from 'node:perf_hooks'
import { createGzip } from 'node:zlib'
import { DeleteObjectsCommand, DeleteBucketCommand, GetObjectCommand, PutObjectCommand, CreateMultipartUploadCommand } from '@aws-sdk/client-s3'
import backup, { type FastifySqliteBackupOptions, type S3Destination } from 'fastify-sqlite-backup'
import { resolveS3, type S3Settings } from '../lib/destinations/s3-options'
import { decryptStream } from '../lib/destinations/encryption'
import { createDatabase, buildApp, count, integrityCheck, backupFiles, destinationFiles, delay, waitFor, openFilesUnder, logCapture, threadCount, type LogLine } from './helpers'
import { continuousS3Tests } from './s3-continuous'
import { findS3Server, SKIP_MESSAGE, client, newBucket, listKeys, multipartUploads, gateway, s3Destination, countingProxy, type S3Server } from './s3-server'

// The destination as built: its uploads run in a worker thread, which starts from the compiled code in dist/.
const { S3BucketDestination } = require('../dist/destinations/s3') as typeof import('../lib/destinations/s3')
const { uploadTask } = require('../dist/destinations/s3-upload') as typeof import('../lib/destinations/s3-upload')

const server = findS3Server()
if (!server) {
  t.comment(SKIP_MESSAGE)
  t.pass('skipped: no S3 test server', { skip: SKIP_MESSAGE })
} else {
  s3Tests(server)
  continuousS3Tests(server)
}

function s3Tests (server: S3Server): void {
  const s3 = (bucket: string, extra: Partial<S3Destination> = {}): S3Destination => s3Destination(server, bucket, extra)

  /** The command-line tool as a real process, with the server's keys in its environment as a user would set them. */
  const cli = ({ cwd }: { cwd?: string } = {}) => async (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> => {
    const child = spawn(process.execPath, [join(__dirname, '..', 'dist', 'cli', 'main.js'), ...args], {
      cwd,
      env: { ...process.env, AWS_ACCESS_KEY_ID: server.accessKeyId, AWS_SECRET_ACCESS_KEY: server.secretAccessKey }
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (text: string) => { stdout += text })
    child.stderr.setEncoding('utf8').on('data', (text: string) => { stderr += text })
    const [code] = await once(child, 'close') as [number | null]
    return { code: code ?? 1, stdout, stderr }
  }

  for (const compression of ['gzip', 'none'] as const) {
    t.test(`round trip through S3 (${compression}): backup, list, verify, restore`, async (t) => {
      const dir = t.testdir()
      const bucket = await newBucket(t, server)
      const db = createDatabase(join(dir, 'app.db'), { rows: 300 })
      t.teardown(() => db.close())
      const staging = join(dir, 'staging')
      const app = await buildApp(t, { database: db, destination: s3(bucket, compression === 'gzip' ? {} : { compression }), staging, interval: false })

      const result = await app.backup.now()
      t.equal(result.skipped, false)
      const suffix = compression === 'gzip' ? '.sqlite.gz' : '.sqlite'
      t.equal(result.path, `s3://${bucket}/app/${result.id}${suffix}`)
      t.same(await listKeys(server, bucket), [`app/${result.id}.json`, `app/${result.id}${suffix}`], 'the data, then its record')
      t.match(result.metadata, { compression, file: `${result.id}${suffix}` })
      if (compression === 'gzip') t.ok(result.metadata.storedBytes! < result.bytes, `stored ${result.metadata.storedBytes} of ${result.bytes} bytes`)
      else t.equal(result.metadata.storedBytes, result.bytes)
      t.same(destinationFiles(staging), [], 'nothing left in the staging directory')

      const listed = await app.backup.list()
      t.equal(listed.length, 1)
      t.equal(listed[0].id, result.id)
      t.equal(listed[0].metadata?.sha256, result.sha256, 'the checksum of the uncompressed database')

      const verified = await app.backup.verify()
      t.equal(verified.ok, true, verified.problems.join('; '))

      const to = join(dir, 'restored.db')
      const restored = await app.backup.restore(result.id, { to })
      t.equal(restored.sha256, result.sha256)
      t.equal(count(to, 'items'), 300)
      t.equal(integrityCheck(to), 'ok')
      t.same(destinationFiles(staging), [], 'downloads are removed')

      const second = await app.backup.now()
      t.equal(second.skipped, true, 'nothing changed: skipped')
      t.match(app.backup.status().destinations, [{ name: `s3://${bucket}/app/`, type: 's3', lastError: null, lastBackupId: result.id, kept: { count: 1 } }])
    })
  }

  t.test('verifying and restoring from S3 leave the mode of an existing local destination as it was', async (t) => {
    const dir = t.testdir({ backups: {} })
    const bucket = await newBucket(t, server)
    const db = createDatabase(join(dir, 'app.db'))
    t.teardown(() => db.close())
    const local = join(dir, 'backups')
    // The owner chose 0755; the downloads staged in it must not change that.
    chmodSync(local, 0o755)
    const app = await buildApp(t, { database: db, destination: [local, s3(bucket)], interval: false })
    const { id } = await app.backup.now()
    t.equal((await app.backup.verify(id, { destination: 1 })).ok, true)
    await app.backup.restore(id, { to: join(dir, 'restored.db'), destination: 1 })
    t.equal(statSync(local).mode & 0o777, 0o755, 'still 0755')
  })

  t.test('a local directory and S3 at once: each gets every backup', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const db = createDatabase(join(dir, 'app.db'))
    t.teardown(() => db.close())
    const local = join(dir, 'backups')
    const app = await buildApp(t, { database: db, destination: [local, s3(bucket)], interval: false })

    const first = await app.backup.now()
    db.prepare('INSERT INTO items (body) VALUES (randomblob(10))').run()
    const second = await app.backup.now()
    t.equal(first.path, join(local, `${first.id}.sqlite`), 'the path is in the local directory')
    t.same(backupFiles(local).map((file) => file.slice(local.length + 1)), [`${first.id}.sqlite`, `${second.id}.sqlite`])
    t.same((await app.backup.list({ destination: 1 })).map((backup) => backup.id), [second.id, first.id])
    t.same((await app.backup.list()).map((backup) => backup.id), [second.id, first.id], 'the first destination by default')
    t.equal((await app.backup.verify(first.id, { destination: 1 })).ok, true)
    const to = join(dir, 'restored.db')
    await app.backup.restore(second.id, { to, destination: 1 })
    t.equal(count(to, 'items'), 101)
    await t.rejects(app.backup.list({ destination: 2 }), { code: 'FST_SQLITE_BACKUP_INVALID_OPTION' })
    const status = app.backup.status()
    t.equal(status.destinations.length, 2)
    t.match(status.destinations[0], { name: local, type: 'local', lastError: null, lastBackupId: second.id })
    t.match(status.destinations[1], { type: 's3', lastError: null, lastBackupId: second.id, kept: { count: 2 } })
  })

  t.test('retention on S3 deletes exactly what the policy says', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const db = createDatabase(join(dir, 'app.db'))
    t.teardown(() => db.close())
    const local = join(dir, 'backups')
    const app = await buildApp(t, { database: db, destination: [s3(bucket), local], keep: 2, interval: false })
    const ids: string[] = []
    for (let i = 0; i < 4; i++) ids.push((await app.backup.now({ force: true })).id)
    const kept = ids.slice(2)
    t.same(await listKeys(server, bucket), kept.flatMap((id) => [`app/${id}.json`, `app/${id}.sqlite.gz`]))
    t.same(backupFiles(local).map((file) => file.slice(local.length + 1)), kept.map((id) => `${id}.sqlite`))
    t.same((await app.backup.list()).map((backup) => backup.id), [...kept].reverse())
    t.match(app.backup.status().kept, { count: 2 })
  })

  t.test('wrong credentials and a missing bucket fail the registration with their codes', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const db = createDatabase(join(dir, 'app.db'))
    t.teardown(() => db.close())
    const secret = `wrong-secret-${randomBytes(8).toString('hex')}`
    const lines: string[] = []
    const cases: Array<[string, FastifySqliteBackupOptions['destination'], string]> = [
      ['wrong secret', s3(bucket, { credentials: { accessKeyId: server.accessKeyId, secretAccessKey: secret } }), 'FST_SQLITE_BACKUP_S3_ACCESS_DENIED'],
      ['unknown key', s3(bucket, { credentials: { accessKeyId: 'NOSUCHKEY', secretAccessKey: secret } }), 'FST_SQLITE_BACKUP_S3_ACCESS_DENIED'],
      ['missing bucket', s3(`${bucket}-missing`), 'FST_SQLITE_BACKUP_S3_NO_BUCKET']
    ]
    for (const [name, destination, code] of cases) {
      const app = Fastify({ logger: { level: 'trace', stream: { write: (line: string) => { lines.push(line) } } } })
      t.teardown(() => app.close())
      const error = await app.register(backup, { database: db, destination, staging: join(dir, 'staging'), interval: false }).ready().then(() => null, (err: Error & { code: string }) => err)
      t.equal(error?.code, code, name)
      t.match(error?.message, /s3:\/\//, `${name}: the message names the destination`)
      t.notMatch(error?.message, secret, `${name}: no secret in the message`)
      t.notMatch(JSON.stringify(error, Object.getOwnPropertyNames(error)), secret, `${name}: nor in the error's properties`)
    }
    t.notMatch(lines.join(''), secret, 'no secret in any log line')
  })

  t.test('no secret in logs, errors or status, whatever happens', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const db = createDatabase(join(dir, 'app.db'))
    t.teardown(() => db.close())
    const lines: string[] = []
    const errors: Error[] = []
    const app2 = Fastify({ logger: { level: 'trace', stream: { write: (line: string) => { lines.push(line) } } } })
    t.teardown(() => app2.close())
    const doomed = await newBucket(t, server)
    await app2.register(backup, { database: db, destination: [join(dir, 'backups'), s3(bucket), s3(doomed, { attempts: 1 })], interval: false, onError: (err) => errors.push(err) })
    await app2.ready()
    await app2.backup.now()
    // The bucket goes away while the app runs.
    const s3client = client(server)
    const keys = await listKeys(server, doomed)
    await s3client.send(new DeleteObjectsCommand({ Bucket: doomed, Delete: { Objects: keys.map((Key) => ({ Key })) } }))
    await s3client.send(new DeleteBucketCommand({ Bucket: doomed }))
    db.prepare('INSERT INTO items (body) VALUES (randomblob(10))').run()
    const result = await app2.backup.now()
    t.equal(result.skipped, false, 'the other destinations got the backup')
    const status = app2.backup.status()
    t.match(status.destinations[2], { lastError: { code: 'FST_SQLITE_BACKUP_S3_NO_BUCKET' } })
    t.match(status.destinations[1], { lastError: null, lastBackupId: result.id })
    t.ok(errors.length >= 1, 'onError heard of the failed destination')
    const everything = lines.join('') + JSON.stringify(status) + errors.map((err) => `${err.message} ${JSON.stringify(err, Object.getOwnPropertyNames(err))}`).join('')
    t.notMatch(everything, server.secretAccessKey, 'the secret access key appears nowhere')
    t.match(lines.join(''), /could not publish to s3:\/\//, 'the failure was logged')
  })

  t.test('the server stopped mid-upload: retried, nothing orphaned, the local destination unaffected', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    // About 40 MB of random rows: several 5 MiB parts, so that the stop lands inside a multipart upload.
    const db = createDatabase(join(dir, 'app.db'), { rows: 40_000 })
    t.teardown(() => db.close())
    const local = join(dir, 'backups')
    const { stream, lines } = logCapture()
    const retries = (): LogLine[] => lines.filter((line) => /retrying/.test(line.msg))
    const app = Fastify({ logger: { level: 'warn', stream } })
    t.teardown(() => app.close())
    await app.register(backup, {
      database: db,
      destination: [local, s3(bucket, { compression: 'none', partSize: 5 * 1024 * 1024, queueSize: 1, attempts: 3 })],
      interval: false
    })
    await app.ready()
    t.teardown(() => { if (!gatewayUp) gateway(server, 'gw-start') })
    let gatewayUp = true
    const running = app.backup.now()
    await waitFor(() => app.backup.status().destinations[0].lastBackupId !== null, 30_000)
    // Wait until the multipart upload is under way, then cut the server.
    const deadline = Date.now() + 20_000
    while ((await multipartUploads(server, bucket)).length === 0 && Date.now() < deadline) await delay(20)
    gateway(server, 'gw-stop')
    gatewayUp = false
    await delay(1500)
    gateway(server, 'gw-start')
    gatewayUp = true
    let result = await running
    const s3Status = app.backup.status().destinations[1]
    if (s3Status.lastError !== null) {
      t.comment(`the S3 destination failed this run (${s3Status.lastError.message}); the next run publishes there`)
      t.equal(existsSync(result.path), true, 'the local destination has the backup all the same')
      result = await app.backup.now()
      t.equal(result.skipped, false, 'nothing changed, yet a new backup is made for the destination that missed one')
    } else {
      // The cut must have hit the upload: a pass here without a retry would prove nothing.
      t.ok(retries().length >= 1, `the upload was retried and succeeded (${retries().length} retries logged)`)
    }
    const status = app.backup.status()
    t.match(status.destinations[1], { lastError: null, lastBackupId: result.id })
    t.equal(status.destinations[0].lastError, null, 'the local destination never failed')
    t.same(await multipartUploads(server, bucket), [], 'no multipart upload left behind')
    const keys = await listKeys(server, bucket)
    t.ok(keys.includes(`app/${result.id}.json`) && keys.includes(`app/${result.id}.sqlite`))
    t.equal((await app.backup.verify(result.id, { destination: 1 })).ok, true)
    t.same(keys.filter((key) => key.endsWith('.json')).length, keys.filter((key) => key.endsWith('.sqlite')).length, 'every data object has its record')
  })

  t.test('client-side encryption (age): round trip; wrong key, missing key and tampering are rejected; the key is never shown', async (t) => {
    const age = await import('age-encryption')
    const identity = await age.generateIdentity()
    const other = await age.generateIdentity()
    const recipient = await age.identityToRecipient(identity)
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const db = createDatabase(join(dir, 'app.db'), { rows: 200 })
    t.teardown(() => db.close())
    const lines: string[] = []
    const logged = async (options: FastifySqliteBackupOptions): Promise<ReturnType<typeof Fastify>> => {
      const app = Fastify({ logger: { level: 'trace', stream: { write: (line: string) => { lines.push(line) } } } })
      t.teardown(() => app.close())
      await app.register(backup, { staging: join(dir, 'staging'), interval: false, ...options })
      await app.ready()
      return app
    }
    const app = await logged({ database: db, destination: s3(bucket, { encryption: { identity } }) })
    const result = await app.backup.now()
    t.equal(result.path, `s3://${bucket}/app/${result.id}.sqlite.gz.age`)
    t.match(result.metadata, { encryption: 'age', compression: 'gzip' })
    const stored = await client(server).send(new GetObjectCommand({ Bucket: bucket, Key: `app/${result.id}.sqlite.gz.age` }))
    const ciphertext = Buffer.from(await stored.Body!.transformToByteArray())
    t.equal(ciphertext.subarray(0, 21).toString(), 'age-encryption.org/v1', 'an age file')
    t.equal(ciphertext.length, result.metadata.storedBytes)
    t.equal((await app.backup.verify()).ok, true)
    const to = join(dir, 'restored.db')
    await app.backup.restore(result.id, { to })
    t.equal(count(to, 'items'), 200)

    // The command-line tool, with the identity in a file as age-keygen writes it.
    const run = cli()
    const keyFile = join(dir, 'key.txt')
    writeFileSync(keyFile, `# created: 2026-01-01T00:00:00Z\n# public key: ${recipient}\n${identity}\n`, { mode: 0o600 })
    const where = [`s3://${bucket}/app`, '--endpoint', server.endpoint, '--path-style']
    const restoredByCli = await run('restore', ...where, '--identity-file', keyFile, '--to', join(dir, 'cli.db'))
    t.equal(restoredByCli.code, 0, restoredByCli.stderr)
    t.equal(count(join(dir, 'cli.db'), 'items'), 200)
    const withoutKey = await run('restore', ...where, '--to', join(dir, 'cli-nokey.db'))
    t.equal(withoutKey.code, 1)
    t.match(withoutKey.stderr, /FST_SQLITE_BACKUP_DECRYPT_FAILED/)
    const notAKey = await run('verify', ...where, '--identity-file', join(dir, 'app.db'))
    t.equal(notAKey.code, 2, 'a file without an identity is a usage error')
    lines.push(restoredByCli.stdout, restoredByCli.stderr, withoutKey.stderr, notAKey.stderr)

    // Another identity: verify reports it, restore refuses it, nothing is written.
    const wrong = await logged({ database: db, destination: s3(bucket, { encryption: { identity: other } }) })
    const verdict = await wrong.backup.verify(result.id)
    t.equal(verdict.ok, false)
    t.match(verdict.problems.join(' '), /could not be decrypted/)
    await t.rejects(wrong.backup.restore(result.id, { to: join(dir, 'wrong.db') }), { code: 'FST_SQLITE_BACKUP_DECRYPT_FAILED' })
    t.equal(existsSync(join(dir, 'wrong.db')), false)

    // The recipient alone backs up, and cannot read back.
    const writeOnly = await logged({ database: db, destination: s3(bucket, { prefix: 'write-only/', encryption: { recipient } }) })
    const sealed = await writeOnly.backup.now({ force: true })
    await t.rejects(writeOnly.backup.restore(sealed.id, { to: join(dir, 'write-only.db') }), { code: 'FST_SQLITE_BACKUP_DECRYPT_FAILED', message: /no "encryption.identity"/ })
    t.equal((await app.backup.verify(sealed.id).catch(() => null)), null, 'a backup of another prefix is not found here')

    // One flipped byte in the middle of the ciphertext.
    ciphertext[Math.floor(ciphertext.length / 2)] ^= 1
    await client(server).send(new PutObjectCommand({ Bucket: bucket, Key: `app/${result.id}.sqlite.gz.age`, Body: ciphertext }))
    const fresh = await logged({ database: db, destination: s3(bucket, { encryption: { identity } }) })
    t.equal((await fresh.backup.verify(result.id)).ok, false, 'tampering is found by verify')
    await t.rejects(fresh.backup.restore(result.id, { to: join(dir, 'tampered.db') }), { code: 'FST_SQLITE_BACKUP_DECRYPT_FAILED' })
    t.equal(existsSync(join(dir, 'tampered.db')), false)
    t.same(destinationFiles(join(dir, 'staging')), [], 'no partial download left behind')

    // A recipient that is not the identity's is a setup mistake.
    const mismatch = Fastify()
    t.teardown(() => mismatch.close())
    const otherRecipient = await age.identityToRecipient(other)
    await t.rejects(async () => { await mismatch.register(backup, { database: db, destination: s3(bucket, { encryption: { identity, recipient: otherRecipient } }), staging: join(dir, 'staging') }).ready() }, { code: 'FST_SQLITE_BACKUP_INVALID_OPTION' })

    const everything = lines.join('') + JSON.stringify(app.backup.status()) + JSON.stringify(await app.backup.list()) + ciphertext.toString('latin1')
    for (const secret of [identity, other, server.secretAccessKey]) t.notMatch(everything, secret, 'no secret in logs, status, records or data')
  })

  t.test('the server stopped mid-upload with no retry left: that destination fails, the next run catches up and cleans up', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const db = createDatabase(join(dir, 'app.db'), { rows: 40_000 })
    t.teardown(() => db.close())
    const local = join(dir, 'backups')
    const errors: Error[] = []
    const app = await buildApp(t, {
      database: db,
      destination: [local, s3(bucket, { compression: 'none', partSize: 5 * 1024 * 1024, queueSize: 1, attempts: 1 })],
      interval: false,
      onError: (err) => errors.push(err)
    })
    let gatewayUp = true
    t.teardown(() => { if (!gatewayUp) gateway(server, 'gw-start') })
    const running = app.backup.now()
    const deadline = Date.now() + 30_000
    while ((await multipartUploads(server, bucket)).length === 0 && Date.now() < deadline) await delay(20)
    gateway(server, 'gw-stop')
    gatewayUp = false
    const first = await running
    t.equal(existsSync(first.path), true, 'the run succeeded: the local destination has the backup')
    t.match(app.backup.status().destinations[1], { lastError: { code: 'FST_SQLITE_BACKUP_PUBLISH_FAILED' }, lastBackupId: null })
    t.equal(errors.length, 1, 'onError heard of the destination that missed it')
    gateway(server, 'gw-start')
    gatewayUp = true
    // The abort could not reach the server: the upload is still open there until the next run.
    t.comment(`multipart uploads open after the cut: ${(await multipartUploads(server, bucket)).length}`)

    const second = await app.backup.now()
    t.equal(second.skipped, false, 'nothing changed, yet a new backup is made for the destination that missed one')
    t.match(app.backup.status().destinations[1], { lastError: null, lastBackupId: second.id })
    t.same(await multipartUploads(server, bucket), [], 'the upload cut short was aborted')
    t.same(await listKeys(server, bucket), [`app/${second.id}.json`, `app/${second.id}.sqlite`], 'no object of the failed upload')
    t.equal((await app.backup.list()).length, 2, 'the local destination kept both')
  })

  for (const encrypted of [false, true]) {
    t.test(`memory stays bounded while a large file is compressed${encrypted ? ', encrypted' : ''} and uploaded`, async (t) => {
      const dir = t.testdir()
      const bucket = await newBucket(t, server)
      const file = join(dir, 'big')
      const size = 200 * 1024 * 1024
      const fd = openSync(file, 'w')
      // Random bytes: gzip cannot shrink them, so a body held in memory would show as about 200 MiB more.
      for (let written = 0; written < size; written += 1024 * 1024) writeSync(fd, randomBytes(1024 * 1024))
      closeSync(fd)
      const { generateIdentity } = await import('age-encryption')
      const encryption = encrypted ? { identity: await generateIdentity() } : undefined
      const destination = new S3BucketDestination(resolveS3({ ...s3(bucket, { encryption }) }, 'destination'))
      t.teardown(() => destination.close())
      globalThis.gc?.()
      const before = process.memoryUsage().rss
      let peak = before
      const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss) }, 10)
      const started = Date.now()
      const id = '20260101T000000000Z-0a1b2c3d'
      const record = await destination.put(file, { id, bytes: size, sha256: 'x' } as never, new AbortController().signal)
      clearInterval(sampler)
      const growth = (peak - before) / 1024 / 1024
      t.comment(`200 MiB upload (gzip${encrypted ? ', age' : ''}, ${(record.storedBytes! / 1024 / 1024).toFixed(0)} MiB stored) in ${Date.now() - started} ms: RSS peak +${growth.toFixed(1)} MiB`)
      t.ok(record.storedBytes! > size, 'nothing to compress: the whole 200 MiB went up')
      t.ok(growth < 100, `RSS grew by ${growth.toFixed(1)} MiB, far below the 200 MiB uploaded`)
      t.same(await multipartUploads(server, bucket), [])
      t.same(await listKeys(server, bucket), [`app/${id}.json`, `app/${id}.sqlite.gz${encrypted ? '.age' : ''}`])
    })
  }

  t.test('an upload runs in a thread of its own: the app\'s event loop does a small part of the work it did, and the thread ends at close', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const file = join(dir, 'snapshot.sqlite')
    writeFileSync(file, randomBytes(48 * 1024 * 1024))
    const settings = resolveS3({ ...s3(bucket) }, 'destination')
    const { region, endpoint, forcePathStyle, credentials, requestTimeout, partSize, queueSize } = settings
    // The loop's busy time (performance.eventLoopUtilization), over the same upload run on it and run by put().
    const busy = async (upload: () => Promise<unknown>): Promise<number> => {
      const start = performance.eventLoopUtilization()
      await upload()
      return performance.eventLoopUtilization(start).active
    }
    const onLoop = await busy(() => uploadTask({ client: { region, endpoint, forcePathStyle, credentials, requestTimeout }, bucket, key: 'on-loop.sqlite.gz', file, gzip: true, recipient: undefined, partSize, queueSize }, null, new AbortController().signal))
    const threadsBefore = threadCount()
    const destination = new S3BucketDestination(settings)
    const id = '20260101T000000000Z-0a1b2c3d'
    const inThread = await busy(() => destination.put(file, { id, bytes: 48 * 1024 * 1024, sha256: 'x' } as never, new AbortController().signal))
    t.comment(`48 MiB, gzip: the event loop was busy ${onLoop.toFixed(0)} ms running the upload, ${inThread.toFixed(0)} ms waiting on its thread`)
    t.ok(inThread < onLoop / 4, `the loop's busy time fell from ${onLoop.toFixed(0)} ms to ${inThread.toFixed(0)} ms`)
    t.same(await listKeys(server, bucket), [`app/${id}.json`, `app/${id}.sqlite.gz`, 'on-loop.sqlite.gz'])
    t.ok(threadCount() > threadsBefore, 'the upload thread runs')
    await destination.close()
    t.equal(threadCount(), threadsBefore, 'close() ended it')
  })

  t.test('uploads run side by side: a segment is not queued behind a large backup', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const large = join(dir, 'snapshot.sqlite')
    writeFileSync(large, randomBytes(96 * 1024 * 1024))
    const segment = join(dir, 'segment')
    writeFileSync(segment, randomBytes(4096))
    const destination = new S3BucketDestination(resolveS3({ ...s3(bucket, { compression: 'none' }) }, 'destination'))
    t.teardown(() => destination.close())
    // The thread started and warm, so that the segment's time is its upload's alone.
    await destination.putSegment(segment, 'wal/warm-up', new AbortController().signal)
    let backupDone = false
    const backup = destination.put(large, { id: '20260101T000000000Z-0a1b2c3d', bytes: 96 * 1024 * 1024, sha256: 'x' } as never, new AbortController().signal)
      .finally(() => { backupDone = true })
    // Under way: its multipart upload is on the server.
    for (let tries = 0; (await multipartUploads(server, bucket)).length === 0; tries++) {
      if (tries === 1000) throw new Error('the backup\'s multipart upload never started')
      await delay(10)
    }
    await destination.putSegment(segment, 'wal/segment', new AbortController().signal)
    t.equal(backupDone, false, 'the segment is stored while the backup is still uploading')
    await backup
    t.same(await listKeys(server, bucket, 'app/wal/'), ['app/wal/segment', 'app/wal/warm-up'])
  })

  t.test('an upload past uploadTimeout is stopped with its code, and leaves no parts on the server', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const file = join(dir, 'snapshot.sqlite')
    writeFileSync(file, randomBytes(96 * 1024 * 1024))
    const destination = new S3BucketDestination(resolveS3({ ...s3(bucket, { compression: 'none', uploadTimeout: 300 }) }, 'destination'))
    t.teardown(() => destination.close())
    const failed = await destination.put(file, { id: '20260101T000000000Z-0a1b2c3d', bytes: 96 * 1024 * 1024, sha256: 'x' } as never, new AbortController().signal)
      .then(() => null, (err: Error & { code?: string }) => err)
    t.match(failed, { code: 'FST_SQLITE_BACKUP_S3_UPLOAD_TIMEOUT' })
    t.equal(destination.isTransient(failed), true, 'retried, as a timeout may be a slow moment')
    t.same(await multipartUploads(server, bucket), [], 'the multipart upload was aborted')
    t.same(await listKeys(server, bucket), [])
  })

  t.test('the command-line tool lists, verifies and restores s3:// destinations', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const db = createDatabase(join(dir, 'app.db'), { rows: 20 })
    t.teardown(() => db.close())
    const app = await buildApp(t, { database: db, destination: s3(bucket, { prefix: 'team/app' }), staging: join(dir, 'staging'), interval: false })
    const result = await app.backup.now()

    const run = cli()
    const url = `s3://${bucket}/team/app`
    const where = ['--endpoint', server.endpoint, '--region', server.region, '--path-style']

    const listed = await run('list', url, ...where, '--json')
    t.equal(listed.code, 0, listed.stderr)
    t.same(JSON.parse(listed.stdout).map((backup: { id: string }) => backup.id), [result.id])
    const verified = await run('verify', url, ...where)
    t.equal(verified.code, 0, verified.stderr)
    t.match(verified.stdout, result.id)
    const to = join(dir, 'restored.db')
    const restored = await run('restore', url, '--to', to, ...where)
    t.equal(restored.code, 0, restored.stderr)
    t.equal(count(to, 'items'), 20)

    const missing = await run('list', `s3://${bucket}-nope/x`, ...where)
    t.equal(missing.code, 1)
    t.match(missing.stderr, /FST_SQLITE_BACKUP_S3_NO_BUCKET/)
    const flags = await run('list', dir, '--endpoint', server.endpoint)
    t.equal(flags.code, 2, 'S3 flags on a directory are a usage error')
    t.notMatch(listed.stdout + verified.stdout + restored.stdout + missing.stderr, server.secretAccessKey)
  })

  t.test('the command-line tool backs up to s3:// as the plugin does, encrypted with --recipient alone, and writes nothing locally', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const source = join(dir, 'app.db')
    createDatabase(source, { rows: 20 }).close()
    // Run from the test's directory: a URL taken for a relative path would show up there as `s3:/bucket/...`.
    const run = cli({ cwd: dir })
    const url = `s3://${bucket}/cron/app`
    const where = ['--endpoint', server.endpoint, '--region', server.region, '--path-style']

    const first = await run('backup', source, url, ...where, '--json')
    t.equal(first.code, 0, first.stderr)
    const made = JSON.parse(first.stdout)
    t.match(made, { skipped: false, path: `s3://${bucket}/cron/app/${made.id}.sqlite.gz`, metadata: { compression: 'gzip', file: `${made.id}.sqlite.gz` } })
    t.same(await listKeys(server, bucket), [`cron/app/${made.id}.json`, `cron/app/${made.id}.sqlite.gz`], 'the data and its record, where the plugin puts them')
    t.same(readdirSync(dir).filter((name) => !name.startsWith('app.db')), [], 'nothing written in the working directory')

    // The plugin reads it as one of its own; a second run finds it and skips.
    const app = await buildApp(t, { database: join(dir, 'app.db'), destination: s3(bucket, { prefix: 'cron/app' }), staging: join(dir, 'staging'), interval: false })
    t.same((await app.backup.list()).map((backup) => backup.id), [made.id])
    t.equal((await app.backup.verify(made.id)).ok, true)
    const again = await run('backup', source, url, ...where, '--json')
    t.equal(again.code, 0, again.stderr)
    t.match(JSON.parse(again.stdout), { skipped: true, id: made.id })
    const restored = await run('restore', url, '--to', join(dir, 'restored.db'), ...where)
    t.equal(restored.code, 0, restored.stderr)
    t.equal(count(join(dir, 'restored.db'), 'items'), 20)

    // Encrypted with the public key alone, as a cron host that must not hold the secret one would; the identity reads it back.
    const age = await import('age-encryption')
    const identity = await age.generateIdentity()
    const recipient = await age.identityToRecipient(identity)
    const sealedUrl = `s3://${bucket}/sealed`
    const sealed = await run('backup', source, sealedUrl, ...where, '--recipient', recipient, '--json')
    t.equal(sealed.code, 0, sealed.stderr)
    const sealedBackup = JSON.parse(sealed.stdout)
    t.match(sealedBackup, { metadata: { encryption: 'age', file: `${sealedBackup.id}.sqlite.gz.age` } })
    const keyFile = join(dir, 'key.txt')
    writeFileSync(keyFile, `${identity}\n`, { mode: 0o600 })
    const opened = await run('restore', sealedUrl, '--identity-file', keyFile, '--to', join(dir, 'sealed.db'), ...where)
    t.equal(opened.code, 0, opened.stderr)
    t.equal(count(join(dir, 'sealed.db'), 'items'), 20)
    const notARecipient = await run('backup', source, sealedUrl, ...where, '--recipient', 'age1nope')
    t.equal(notARecipient.code, 2, 'a malformed recipient is a usage error')
    t.match(notARecipient.stderr, /invalid destination/)
    t.notMatch(first.stdout + first.stderr + sealed.stdout + sealed.stderr + opened.stdout, server.secretAccessKey)
  })

  /** Starts `count` multipart uploads at `key(i)` and leaves them unfinished, as processes that died mid-upload do. */
  const startUploads = async (bucket: string, count: number, key: (i: number) => string): Promise<void> => {
    const s3client = client(server)
    let next = 0
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next < count) await s3client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key(next++) }))
    }))
  }

  t.test('unfinished multipart uploads are aborted past the first page of ListMultipartUploads', async (t) => {
    const bucket = await newBucket(t, server)
    // Pages of 10 (the server's default is 1000): 25 uploads take three pages.
    const pageSize = { listPageSize: 10 }
    await startUploads(bucket, 25, (i) => `app/20260101T0000000${String(i).padStart(2, '0')}Z-0a1b2c3d.sqlite.gz`)
    await startUploads(bucket, 1, () => 'elsewhere/20260101T000000000Z-0a1b2c3d.sqlite.gz')
    t.equal((await multipartUploads(server, bucket)).length, 26)

    // At start: every upload under the prefix older than the upload timeout is a leftover.
    await delay(20)
    const leftovers = new S3BucketDestination(resolveS3({ ...s3(bucket, { uploadTimeout: 1 }) }, 'destination'), pageSize)
    t.teardown(() => leftovers.close())
    const removed = await leftovers.removeLeftovers()
    t.equal(removed.length, 25, 'all 25 reported')
    t.same((await multipartUploads(server, bucket)).map((upload) => upload.split(' ')[0]), ['elsewhere/20260101T000000000Z-0a1b2c3d.sqlite.gz'], 'all 25 aborted; the one outside the prefix is left alone')

    // After a failed upload: every unfinished upload of its key is aborted (here 25 of them, as if it had failed
    // 25 times), and no other.
    const id = '20260102T000000000Z-0a1b2c3d'
    const key = `app/${id}.sqlite.gz`
    await startUploads(bucket, 25, () => key)
    await startUploads(bucket, 1, () => `${key}.other`)
    const destination = new S3BucketDestination(resolveS3({ ...s3(bucket) }, 'destination'), pageSize)
    t.teardown(() => destination.close())
    const missing = join(t.testdir(), 'missing.sqlite')
    await t.rejects(destination.put(missing, { id, bytes: 1, sha256: 'x' } as never, new AbortController().signal), 'the upload fails (its file is missing)')
    t.same((await multipartUploads(server, bucket)).map((upload) => upload.split(' ')[0]).sort(), [`${key}.other`, 'elsewhere/20260101T000000000Z-0a1b2c3d.sqlite.gz'], 'all 25 uploads of its key aborted')
  })

  t.test('a download that decompresses past its recorded size (a gzip bomb) fails verify and restore with a coded error, leaving no file', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const db = createDatabase(join(dir, 'app.db'), { rows: 20 })
    t.teardown(() => db.close())
    const staging = join(dir, 'staging')
    const app = await buildApp(t, { database: db, destination: s3(bucket), staging, interval: false })
    const result = await app.backup.now()

    // 64 MiB of zeros, gzipped to about 64 KiB, in place of the backup; its record still says ~30 KB.
    const bombSize = 64 * 1024 * 1024
    const chunks: Buffer[] = []
    const zeros = Readable.from((function * () { for (let i = 0; i < bombSize / 65536; i++) yield Buffer.alloc(65536) })())
    for await (const chunk of zeros.pipe(createGzip())) chunks.push(chunk as Buffer)
    const bomb = Buffer.concat(chunks)
    await client(server).send(new PutObjectCommand({ Bucket: bucket, Key: `app/${result.id}.sqlite.gz`, Body: bomb }))
    t.comment(`${bomb.length} bytes that inflate to ${bombSize}, under a record of ${result.bytes} bytes`)

    // The largest file the staging directory ever held while the download ran.
    let largest = 0
    const sampler = setInterval(() => {
      for (const name of existsSync(staging) ? readdirSync(staging) : []) {
        try {
          largest = Math.max(largest, statSync(join(staging, name)).size)
        } catch {}
      }
    }, 2)
    t.teardown(() => clearInterval(sampler))
    const to = join(dir, 'restored.db')
    t.match(await app.backup.verify(result.id), { ok: false, problems: [/record/] }, 'verify reports it')
    await t.rejects(app.backup.restore(result.id, { to }), { code: 'FST_SQLITE_BACKUP_VERIFY_FAILED' }, 'so does restore')
    clearInterval(sampler)
    t.ok(largest <= result.bytes + 1024 * 1024, `the download stopped at the recorded size (largest file in staging: ${largest} bytes)`)
    t.same(destinationFiles(staging), [], 'no file left in the staging directory')
    t.notOk(existsSync(to), 'nothing restored')
  })

  t.test('an oversized or malformed record counts as a missing record', async (t) => {
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const db = createDatabase(join(dir, 'app.db'), { rows: 20 })
    t.teardown(() => db.close())
    const staging = join(dir, 'staging')
    const app = await buildApp(t, { database: db, destination: s3(bucket), staging, interval: false })
    const good = await app.backup.now({ force: true })
    const oversized = await app.backup.now({ force: true })
    const malformed = await app.backup.now({ force: true })
    const wrongSize = await app.backup.now({ force: true })
    const put = (id: string, body: string): Promise<unknown> => client(server).send(new PutObjectCommand({ Bucket: bucket, Key: `app/${id}.json`, Body: body }))
    // A valid record padded past 1 MiB; one that is not JSON; one whose size is not a number.
    await put(oversized.id, JSON.stringify({ ...oversized.metadata, padding: 'x'.repeat(1024 * 1024) }))
    await put(malformed.id, '{"id": "' + malformed.id)
    await put(wrongSize.id, JSON.stringify({ ...wrongSize.metadata, bytes: 'a lot' }))

    const fresh = new S3BucketDestination(resolveS3({ ...s3(bucket) }, 'destination'))
    t.teardown(() => fresh.close())
    const listed = await fresh.list()
    t.same(listed.map((backup) => [backup.id, backup.metadata === null]), [
      [wrongSize.id, true], [malformed.id, true], [oversized.id, true], [good.id, false]
    ], 'listed, each without its record but the good one')
    for (const { id } of [oversized, malformed, wrongSize]) {
      const found = await fresh.find(id).catch((err: Error) => err)
      t.equal(found instanceof Error ? found.message : found.metadata === null, true, `${id} is found, without its record`)
    }
    t.match(await fresh.find(good.id), { id: good.id, metadata: { sha256: good.sha256 } })

    // Without a record there is no size to stop a download at: nothing is downloaded.
    const other = await buildApp(t, { database: db, destination: s3(bucket), staging, interval: false })
    t.match(await other.backup.verify(oversized.id), { ok: false, problems: [/record/] })
    await t.rejects(other.backup.restore(malformed.id, { to: join(dir, 'restored.db') }), { code: 'FST_SQLITE_BACKUP_VERIFY_FAILED' })
    t.notOk(existsSync(join(dir, 'restored.db')))
    t.same(destinationFiles(staging), [])
  })

  t.test('a malformed age key (right shape, wrong checksum) fails the registration, without showing the key', async (t) => {
    const age = await import('age-encryption')
    const identity = await age.generateIdentity()
    const recipient = await age.identityToRecipient(identity)
    // The last character of a bech32 key is part of its checksum: changing it keeps the shape the options check.
    const flip = (key: string): string => key.slice(0, -1) + (key.slice(-1) === 'q' ? 'p' : 'q')
    const keys: Array<[string, string, S3Destination['encryption']]> = [
      ['recipient', flip(recipient), { recipient: flip(recipient) }],
      ['identity', flip(identity.toLowerCase()).toUpperCase(), { identity: flip(identity.toLowerCase()).toUpperCase() }]
    ]
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const db = createDatabase(join(dir, 'app.db'), { rows: 10 })
    t.teardown(() => db.close())
    for (const [name, key, encryption] of keys) {
      t.doesNotThrow(() => resolveS3({ ...s3(bucket, { encryption }) }, 'destination'), `the ${name} passes the shape check`)
      const app = Fastify()
      t.teardown(() => app.close())
      const error = await app.register(backup, { database: db, destination: s3(bucket, { encryption }), staging: join(dir, 'staging'), interval: false }).ready().then(() => null, (err: Error) => err)
      t.match(error, { code: 'FST_SQLITE_BACKUP_INVALID_OPTION', message: new RegExp(`encryption\\.${name}`) }, `a malformed ${name} fails the registration`)
      t.notMatch(inspect(error, { depth: 10 }), key, 'the key is nowhere in the error (age\'s own message quotes it)')
    }
    // Reading with a malformed identity (the command-line tool takes one from a file): refused, without quoting it.
    const [, badIdentity] = keys[1]
    const refused = await decryptStream(Readable.from([]), 'an-id', badIdentity).then(() => null, (err: Error) => err)
    t.match(refused, { code: 'FST_SQLITE_BACKUP_DECRYPT_FAILED' })
    t.notMatch(inspect(refused, { depth: 10 }), badIdentity, 'the identity is nowhere in the error')
  })

  t.test('an upload that fails after its file was opened closes the file', async (t) => {
    const age = await import('age-encryption')
    const recipient = await age.identityToRecipient(await age.generateIdentity())
    const dir = t.testdir()
    const bucket = await newBucket(t, server)
    const id = '20260101T000000000Z-0a1b2c3d'
    const cases: Array<[string, S3Settings]> = [
      // A recipient that passes the shape check but not age's own parsing, put() called without prepare().
      ['a malformed recipient', resolveS3({ ...s3(bucket, { encryption: { recipient: recipient.slice(0, -1) + (recipient.endsWith('q') ? 'p' : 'q') } }) }, 'destination')],
      // The upload itself refused once the file is open and read (lib-storage checks its part size when created).
      ['an upload that cannot start', { ...resolveS3({ ...s3(bucket) }, 'destination'), partSize: 1024 }]
    ]
    for (const [index, [name, settings]] of cases.entries()) {
      // Larger than the streams buffer: the read stream stops mid-file, holding its descriptor, if nobody drains it.
      const file = join(dir, `snapshot-${index}.sqlite`)
      writeFileSync(file, randomBytes(8 * 1024 * 1024))
      const before = openFilesUnder(dir)
      const destination = new S3BucketDestination(settings)
      t.teardown(() => destination.close())
      await t.rejects(destination.put(file, { id, bytes: 8 * 1024 * 1024, sha256: 'x' } as never, new AbortController().signal), `${name}: the upload fails`)
      // The read stream opens its file asynchronously, possibly after put() has failed: wait for it to show up (if
      // it ever does). Then, as the plugin does with a snapshot, the file is deleted; wait for it to be closed.
      await waitFor(() => openFilesUnder(dir).length > before.length, 1000).catch(() => {})
      rmSync(file)
      await waitFor(() => openFilesUnder(dir).length === before.length, 2000).catch(() => {})
      t.same(openFilesUnder(dir), before, `${name}: no descriptor left open on the deleted file`)
    }
    t.same(await multipartUploads(server, bucket), [])
  })

  t.test('an S3 destination that cannot be reached at startup does not keep the app from starting', async (t) => {
    const dir = t.testdir()
    const db = createDatabase(join(dir, 'app.db'))
    t.teardown(() => db.close())
    const local = join(dir, 'backups')
    const app = await buildApp(t, { database: db, destination: [local, s3('some-bucket', { endpoint: 'http://127.0.0.1:9', attempts: 1 })], interval: false })
    const result = await app.backup.now()
    t.equal(existsSync(result.path), true)
    t.match(app.backup.status().destinations[1], { lastError: { code: 'FST_SQLITE_BACKUP_PUBLISH_FAILED', message: /ECONNREFUSED|connect/ } })
  })

  t.test('two apps with offsite-only destinations share a staging directory: each runs its own schedule', async (t) => {
    // Different databases, different buckets, one staging directory (the default one is per OS user): their leases
    // protect different things, so neither may hold the other up.
    const dir = t.testdir()
    const staging = join(dir, 'staging')
    const apps: FastifyInstance[] = []
    for (const name of ['first', 'second']) {
      const db = createDatabase(join(dir, `${name}.db`))
      t.teardown(() => db.close())
      apps.push(await buildApp(t, { database: db, destination: s3(await newBucket(t, server)), staging, interval: 300, runOnStart: true }))
    }
    await waitFor(() => apps.every((app) => app.backup.status().published >= 1), 30_000)
    for (const app of apps) t.equal(app.backup.status().scheduledBy, 'this-process', 'each app runs the schedule of its own database')
  })
}

// Counted at the server's door, against the real server: every request the plugin sends, from any thread.
t.test('S3 requests per backup and per list, as the README says', { skip: server ? false : SKIP_MESSAGE }, async (t) => {
  const dir = t.testdir()
  const bucket = await newBucket(t, server!)
  const db = createDatabase(join(dir, 'app.db'))
  t.teardown(() => db.close())
  const { endpoint, take } = await countingProxy(t, server!)
  const credentials = { accessKeyId: server!.accessKeyId, secretAccessKey: server!.secretAccessKey }
  const descriptor = { type: 's3' as const, bucket, prefix: 'app/', region: server!.region, endpoint, forcePathStyle: true, credentials }

  const app = await buildApp(t, {
    database: db,
    destination: descriptor,
    staging: join(dir, 'staging'),
    keep: 2,
    interval: false
  })
  t.same(take(), ['HeadBucket', 'ListMultipartUploads', 'ListObjectsV2', 'ListObjectsV2'], 'registration and ready, empty prefix')
  const perBackup = ['ListObjectsV2', 'ListObjectsV2', 'PutObject', 'PutObject']
  await app.backup.now()
  t.same(take(), perBackup, 'a small backup: data and record, one listing to avoid duplicates, one for retention')
  await app.backup.now()
  t.same(take(), [], 'nothing changed: no request at all')
  db.prepare('INSERT INTO items (body) VALUES (randomblob(10))').run()
  await app.backup.now()
  t.same(take(), perBackup)
  db.prepare('INSERT INTO items (body) VALUES (randomblob(10))').run()
  await app.backup.now()
  t.same(take(), [...perBackup, 'DeleteObject', 'DeleteObject'].sort(), 'retention deletes the record, then the data')
  await app.backup.list()
  t.same(take(), ['ListObjectsV2'], 'list() in the process that wrote the records: one listing')

  const fresh = new S3BucketDestination(resolveS3({ ...descriptor }, 'destination'))
  t.teardown(() => fresh.close())
  t.equal((await fresh.list()).length, 2)
  t.same(take(), ['GetObject', 'GetObject', 'ListObjectsV2'], 'list() elsewhere: one listing and one GET per record')
})
