// jobwire dashboard: native ES modules, no build step, no dependencies. This is the page's module
// script; the code lives in js/, a module per concern:
//
//   main.js      routing between the views, sign-in and sign-out, the one-second tick, boot
//   overview.js  jobs.js  job.js   the three views
//   table.js     the job table and a live list of jobs     charts.js   stats samples, SVG charts
//   socket.js    the WebSocket feed and its inbox          api.js      REST calls, problem text
//   jobstate.js  events and snapshots merged into a job    widgets.js  dialog, card, stats hand-off
//   session.js   who is signed in, the mounted view        format.js   DOM helpers, numbers, times
//   constants.js

import { boot } from "./js/main.js";

boot();
