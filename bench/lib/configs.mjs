// What is measured side by side: each method in the journal modes it is run in. The copy limit runs on the WAL
// file (the same bytes as the rollback one) and is the baseline of every time ratio.
export const CONFIGS = [
  { id: 'original-wal', method: 'original', mode: 'wal' },
  { id: 'original-delete', method: 'original', mode: 'delete' },
  { id: 'copy', method: 'copy', mode: 'wal' },
  { id: 'plugin-wal', method: 'plugin', mode: 'wal' },
  { id: 'plugin-delete', method: 'plugin', mode: 'delete' }
]

export const BASELINE = 'copy'
