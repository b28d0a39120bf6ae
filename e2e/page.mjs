// What the tests know about the page: its data-testid hooks, and a script that records what the
// page does (progress values, Content-Security-Policy violations) from before it starts.

/** A CSS attribute value in double quotes. */
export function q(value) {
  return `"${String(value).replace(/["\\]/g, '\\$&')}"`;
}

export const sel = {
  ready: 'body[data-ready=true]',
  input: '[data-testid=file-input]',
  dropzone: '[data-testid=dropzone]',
  error: '[data-testid=error]',
  tokenSection: '[data-testid=token-section]',
  tokenInput: '[data-testid=token-input]',
  tokenSubmit: '[data-testid=token-submit]',
  tokenError: '[data-testid=token-error]',
  upload: (name) => `[data-testid=upload-item][data-name=${q(name)}]`,
  uploadIn: (name, state) => `[data-testid=upload-item][data-name=${q(name)}][data-state=${state}]`,
  row: (name) => `[data-testid=file-row][data-name=${q(name)}]`,
  uploadedRow: (name) => `[data-testid=file-row][data-name=${q(name)}][data-status=uploaded]`,
};

/**
 * Runs in the page before its own script: records every value each upload's progress bar shows,
 * every text its status line shows and every CSP violation, so a test can check them afterwards.
 */
export const RECORDER = `(() => {
  window.__progress = {};
  window.__statuses = {};
  window.__csp = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || ''));
  });
  new MutationObserver((records) => {
    for (const r of records) {
      const p = r.target;
      if (!p.matches || !p.matches('progress')) continue;
      const item = p.closest('[data-testid=upload-item]');
      if (!item) continue;
      (window.__progress[item.dataset.name] = window.__progress[item.dataset.name] || []).push(Number(p.getAttribute('value')));
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['value'] });
  new MutationObserver((records) => {
    for (const r of records) {
      const node = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      const status = node && node.closest && node.closest('[data-testid=upload-status]');
      const item = status && status.closest('[data-testid=upload-item]');
      if (!item) continue;
      const seen = (window.__statuses[item.dataset.name] = window.__statuses[item.dataset.name] || []);
      if (seen[seen.length - 1] !== status.textContent) seen.push(status.textContent);
    }
  }).observe(document, { subtree: true, childList: true, characterData: true });
})();`;

/** Checks the recorded progress of one upload: it moved forward only and ended at 100. */
export function checkProgress(values, name) {
  if (!values || !values.length) throw new Error(`no progress was shown for ${name}`);
  for (let i = 1; i < values.length; i++) {
    if (values[i] < values[i - 1]) {
      throw new Error(`progress of ${name} went backwards: ${values.join(', ')}`);
    }
  }
  if (values[values.length - 1] !== 100) {
    throw new Error(`progress of ${name} ended at ${values[values.length - 1]}, not 100`);
  }
  return new Set(values).size;
}
