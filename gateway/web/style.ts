/**
 * The consoles' one stylesheet, shared by the customer's page and the operator's, added by
 * each page's script (no extra asset to serve). Colours carry meaning with a text label
 * beside them everywhere, never alone.
 */
export const consoleCss = `
:root { --ink: #1d2330; --muted: #5b6477; --line: #e3e6ec; --bg: #f5f6f8; --ok: #17803d; --bad: #b42318; --warn: #a15c00;
  --attempt: #2d5bd7; --compensation: #7b3fd1; --timer: #0e7490; --signal: #c2410c; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: var(--ink); background: var(--bg); }
header { background: var(--ink); color: #fff; padding: 12px 24px; display: flex; gap: 16px; align-items: center; flex-wrap: wrap; }
header h1 { font-size: 18px; margin: 0; flex: 1; }
header a { color: #cfe0ff; }
header .muted { color: #aab3c5; font-weight: 400; }
[hidden] { display: none !important; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 16px; padding: 16px 24px; }
section { background: #fff; border-radius: 8px; padding: 12px 16px; box-shadow: 0 1px 2px #0002; min-width: 0; overflow-x: auto; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 16px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 12px 0 6px; }
table { width: 100%; border-collapse: collapse; }
td, th { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 13px; }
td.empty, p.empty { color: var(--muted); font-style: italic; }
input[type=number] { width: 56px; }
button { padding: 6px 12px; border-radius: 6px; border: 1px solid #2d5bd7; background: #2d5bd7; color: #fff; cursor: pointer; font: inherit; }
button.secondary { background: #fff; color: #2d5bd7; }
button.danger { background: var(--bad); border-color: var(--bad); }
button.link { background: none; border: none; color: #2d5bd7; padding: 0 2px; text-decoration: underline; }
button:disabled { opacity: .5; cursor: default; }
code { font-size: 13px; }
.muted { color: var(--muted); }
.status-ORDER_STATUS_CONFIRMED, .SERVING, .closed, .state-succeeded { color: var(--ok); font-weight: 600; }
.status-ORDER_STATUS_CANCELLED, .UNREACHABLE, .NOT_SERVING, .open, .state-failed { color: var(--bad); font-weight: 600; }
.status-ORDER_STATUS_PENDING, .half-open, .state-started, .isolated { color: var(--warn); font-weight: 600; }
.state-compensated { color: var(--compensation); font-weight: 600; }
.error, [role=alert] { color: var(--bad); min-height: 1.2em; }
ol { margin: 0; padding-left: 20px; }
.legend { list-style: none; display: flex; flex-wrap: wrap; gap: 4px 14px; padding: 0; margin: 8px 0 0; font-size: 12px; color: var(--muted); }
.legend li { display: flex; align-items: center; gap: 5px; }
.swatch { display: inline-block; width: 18px; height: 10px; border-radius: 2px; background: var(--attempt); }

/* saga timeline */
.timeline { font-size: 13px; }
.tl-row { display: grid; grid-template-columns: minmax(240px, 28%) 1fr; align-items: center; gap: 2px 10px; padding: 4px 0; border-bottom: 1px solid var(--line); }
.tl-label { display: flex; flex-wrap: wrap; gap: 2px 8px; align-items: baseline; }
.tl-name { font-weight: 600; }
.tl-times { color: var(--muted); font-size: 12px; }
.tl-wait { color: var(--signal); font-weight: 600; font-size: 12px; width: 100%; }
.tl-track, .tl-axis { position: relative; height: 18px; }
.tl-axis { border-bottom: 1px solid var(--muted); height: 16px; }
.tl-axis-title { color: var(--muted); font-size: 12px; }
.tl-tick { position: absolute; bottom: 2px; font-size: 11px; color: var(--muted); transform: translateX(-50%); white-space: nowrap; }
.tl-tick:first-child { transform: none; }
.tl-section { font-weight: 600; color: var(--compensation); padding: 8px 0 2px; }
.tl-details { grid-column: 2; margin: 2px 0 0; padding-left: 16px; color: var(--muted); font-size: 12px; }
.phase-error { color: var(--bad); }
.phase, .backoff { position: absolute; top: 2px; height: 14px; border-radius: 3px; min-width: 3px; }
.phase[data-kind=attempt], .swatch-attempt { background: var(--attempt); }
.phase[data-kind=attempt][data-outcome=failed], .phase[data-kind=attempt][data-outcome=retrying], .phase[data-kind=attempt][data-outcome=interrupted], .swatch-failed { background: var(--bad); }
.phase[data-kind=compensation], .swatch-compensation { background: var(--compensation); }
.phase[data-kind=compensation][data-outcome=retrying], .phase[data-kind=compensation][data-outcome=failed] { background: repeating-linear-gradient(90deg, var(--compensation) 0 4px, var(--bad) 4px 8px); }
.phase[data-kind=timer], .swatch-timer { background: repeating-linear-gradient(90deg, var(--timer) 0 6px, #0e749066 6px 9px); }
.phase[data-kind=signal], .swatch-signal { background: #fff; border: 2px dashed var(--signal); }
.phase[data-kind=signal][data-outcome=signalled] { background: #c2410c33; border-style: solid; }
.phase[data-kind=signal][data-outcome=timed-out] { border-color: var(--bad); }
.backoff, .swatch-backoff { background: repeating-linear-gradient(135deg, #b4231833 0 3px, transparent 3px 7px); border: 1px dotted var(--bad); }
.phase.open { animation: growing 1.2s ease-in-out infinite alternate; }
@keyframes growing { from { opacity: 1; } to { opacity: .55; } }

/* trace waterfall */
.waterfall { font-size: 12px; }
.wf-row { display: grid; grid-template-columns: minmax(220px, 34%) 1fr; gap: 8px; align-items: center; padding: 1px 0; border-bottom: 1px solid #f0f1f4; }
.wf-axis { color: var(--muted); font-weight: 600; }
.wf-name { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.wf-service { font-weight: 600; }
.wf-track { position: relative; height: 16px; }
.wf-bar { position: absolute; top: 3px; height: 10px; border-radius: 2px; min-width: 2px; }
.wf-duration { position: absolute; top: 0; color: var(--muted); font-size: 11px; white-space: nowrap; }
.wf-tick { position: absolute; top: 0; }
.wf-tick.end { right: 0; }
.span.error .wf-name { color: var(--bad); }

/* breakers */
.breaker { display: grid; grid-template-columns: 170px 1fr 150px; gap: 10px; align-items: center; padding: 3px 0; }
.strip { position: relative; height: 14px; background: #eef0f3; border-radius: 3px; overflow: hidden; }
.run { position: absolute; top: 0; bottom: 0; }
.run.closed { background: var(--ok); } .run.half-open { background: var(--warn); } .run.open { background: var(--bad); } .run.isolated { background: #6b7280; }
.badge { font-size: 12px; }
.breaker-counts, .axis-note { color: var(--muted); font-size: 12px; margin: 4px 0 0; }

/* dialogs and tabs */
dialog { border: none; border-radius: 8px; box-shadow: 0 8px 32px #0004; max-width: 520px; }
dialog textarea { width: 100%; min-height: 60px; font: inherit; }
dialog menu { display: flex; gap: 8px; justify-content: flex-end; padding: 0; margin: 12px 0 0; }
[role=tablist] { display: flex; gap: 4px; margin-bottom: 8px; flex-wrap: wrap; }
[role=tab] { background: #fff; color: var(--ink); border-color: var(--line); }
[role=tab][aria-selected=true] { background: var(--ink); color: #fff; border-color: var(--ink); }
.saga-head button { margin-left: 8px; }
.actions { white-space: nowrap; }
.actions button + button { margin-left: 4px; }
#route-table button[aria-pressed=true] { outline: 3px solid var(--ok); outline-offset: 1px; }
.outcome { min-height: 1.2em; font-weight: 600; }
.outcome.ok { color: var(--ok); }
.health-line { display: flex; gap: 12px; flex-wrap: wrap; font-size: 13px; margin: 0; padding: 6px 24px; background: #fff; border-bottom: 1px solid var(--line); }
.confirm-payment { border: 2px solid var(--signal); border-radius: 8px; padding: 8px 12px; margin: 8px 0; background: #fff7ed; }
.chart { min-height: 260px; }
#trace-list { max-height: 520px; overflow-y: auto; }
`;
