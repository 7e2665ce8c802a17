// What is measured side by side: each method in the journal modes it is run in, with its options. The copy limit
// runs on the WAL file (the same bytes as the rollback one) and is the baseline of every time ratio.
// "rotate": a previous backup of the same size exists and is deleted as part of the measured backup (retention
// with keep: 1 for the plugin; an unlink after the copy for the plain copy), since deleting a big file stalls other
// writers' fsyncs too. "keep": a previous copy exists and stays, as the plugin's first backup does with keep: 2.
// `sameWork`: the plain copy that leaves the destination as the plugin's row does (a second file written beside
// the first, or over its deletion). What a write costs depends on how much new page cache it needs: on a VM that
// returns freed memory to its host, a second gigabyte kept in the page cache costs a plain copy 2-4x the first.

/** The configurations of a run; `rates` (MB/s) add the plugin with maxRate set, rotating. */
export function configsFor (rates) {
  return [
    { id: 'original-wal', method: 'original', mode: 'wal' },
    { id: 'original-delete', method: 'original', mode: 'delete' },
    { id: 'copy', method: 'copy', mode: 'wal' },
    { id: 'copy-keep', method: 'copy', mode: 'wal', options: { keep: true } },
    { id: 'copy-rotate', method: 'copy', mode: 'wal', options: { rotate: true } },
    { id: 'plugin-wal', method: 'plugin', mode: 'wal', sameWork: 'copy-keep' },
    { id: 'plugin-wal-rotate', method: 'plugin', mode: 'wal', options: { rotate: true }, sameWork: 'copy-rotate' },
    ...rates.map((rate) => ({ id: `plugin-wal-rotate-${rate}MBps`, method: 'plugin', mode: 'wal', options: { rotate: true, maxRate: `${rate}MB` }, sameWork: 'copy-rotate' })),
    { id: 'plugin-delete', method: 'plugin', mode: 'delete', sameWork: 'copy-keep' }
  ]
}

export const BASELINE = 'copy'
