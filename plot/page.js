// tapstack plot: draws the data embedded above as plain SVG. No library,
// no network. Points that fall on the same pixel column are merged when
// drawn; a point that marks an event (retransmission, probe, drop, RST,
// SYN, FIN, RTO, recovery, queue decision) is always drawn on its own.
(function () {
  'use strict';
  var T0 = performance.now();
  var D = JSON.parse(document.getElementById('tapstack-data').textContent);
  var times = window.tapstackTimes = { parse: performance.now() - T0 };
  D.conns = D.conns || [];
  D.listeners = D.listeners || [];
  var SVG = 'http://www.w3.org/2000/svg';
  var tip = document.getElementById('tip');
  var main = document.getElementById('main');

  // ---- helpers -------------------------------------------------------
  function svg(tag, attrs, parent) {
    var e = document.createElementNS(SVG, tag);
    for (var k in attrs) if (attrs[k] !== undefined) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function html(tag, cls, text, parent) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function txt(parent, x, y, s, attrs) {
    var a = attrs || {};
    a.x = x; a.y = y;
    var e = svg('text', a, parent);
    e.textContent = s;
    return e;
  }
  function fmtBytes(v) {
    var a = Math.abs(v);
    if (a >= 1 << 30) return (v / (1 << 30)).toFixed(2) + ' GiB';
    if (a >= 1 << 20) return (v / (1 << 20)).toFixed(a >= 10 * (1 << 20) ? 1 : 2) + ' MiB';
    if (a >= 1 << 10) return (v / (1 << 10)).toFixed(a >= 10 * (1 << 10) ? 0 : 1) + ' KiB';
    return String(Math.round(v));
  }
  // a byte tick in the axis' unit: 1.5 MiB, 200 KiB, 512
  function fmtByteTick(v, step, unit) {
    if (unit === 1) return fmtTick(v, step);
    return fmtTick(v / unit, step / unit) + (unit === 1024 ? ' KiB' : ' MiB');
  }
  function fmtT(t) { return t.toFixed(6) + ' s'; }
  function fmtTick(v, step) {
    var d = step >= 1 ? 0 : Math.min(6, Math.ceil(-Math.log10(step)));
    return v.toFixed(d);
  }
  function niceStep(span, n) {
    if (!(span > 0)) return 1;
    var raw = span / n, p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
  }
  // ticks: round values; on a byte axis (bin) round in KiB or MiB. On
  // an axis of whole things (bytes, queue entries: whole) a step is at
  // least 1 and no tick is below 0: "0.5 bytes" and "-1 entries" name
  // nothing, they only pad the view.
  function ticks(lo, hi, n, bin, whole) {
    var span = hi - lo, unit = 1;
    if (bin) unit = span >= 2 * (1 << 20) ? 1 << 20 : span >= 2048 ? 1024 : 1;
    var step = niceStep(span / unit, n) * unit, out = [];
    if (whole) step = Math.max(1, Math.round(step));
    var v = Math.ceil(lo / step) * step;
    if (whole) v = Math.max(0, v);
    for (var i = 0; v <= hi + step * 1e-9 && i < 100; v += step, i++) out.push(v);
    return { values: out, step: step, unit: unit };
  }
  function lin(d0, d1, r0, r1) {
    var k = d1 === d0 ? 0 : (r1 - r0) / (d1 - d0);
    var f = function (v) { return r0 + (v - d0) * k; };
    f.inv = function (p) { return k === 0 ? d0 : d0 + (p - r0) / k; };
    return f;
  }
  // lower bound: first index with arr[i].t >= t (or key(arr[i]) >= t)
  function lower(arr, t, key) {
    var lo = 0, hi = arr.length;
    while (lo < hi) { var mid = (lo + hi) >> 1; if (key(arr[mid]) < t) lo = mid + 1; else hi = mid; }
    return lo;
  }
  function segText(s, conn) {
    var from = conn.ends[s.d || 0].addr, to = conn.ends[1 - (s.d || 0)].addr;
    var t = 'frame ' + s.no + '  ' + fmtT(s.t) + '\n' + from + ' > ' + to + '  [' + s.f + ']' +
      ' seq ' + s.s + (s.l ? ':' + (s.s + s.l) : '') + (s.f.indexOf('.') >= 0 ? ' ack ' + (s.a || 0) : '') +
      ' win ' + s.w + (s.l ? ' len ' + s.l : '');
    if (s.k) t += '\nSACK ' + s.k.map(function (b) { return b[0] + '-' + b[1]; }).join(' ');
    if (s.m) t += '\n' + s.m + (s.y ? ': ' + s.y : '');
    if (s.x) t += '\ndropped: ' + (s.z || '');
    if (s.c) t += '\n' + s.c;
    return t;
  }
  function showTip(text, ev) {
    tip.textContent = text;
    tip.hidden = false;
    var x = ev.clientX + 14, y = ev.clientY + 14;
    var r = tip.getBoundingClientRect();
    if (x + r.width > window.innerWidth - 4) x = Math.max(4, ev.clientX - r.width - 14);
    if (y + r.height > window.innerHeight - 4) y = Math.max(4, ev.clientY - r.height - 14);
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  }
  function hideTip() { tip.hidden = true; }

  // Per-column decimation of a line: for each pixel column keep the
  // first, lowest, highest and last point, in order. pts: [[t, v], ...]
  // sorted by t; vi: which index holds the value. Returns [[px, py], ...].
  function decimate(pts, vi, X, Y, t0, t1, skip) {
    var out = [];
    if (!pts || !pts.length) return out;
    var i = Math.max(0, lower(pts, t0, function (p) { return p[0]; }) - 1);
    var col = null, first, lo, hi, last;
    function flush() {
      if (col === null) return;
      var c = [first, lo, hi, last].sort(function (a, b) { return a.i - b.i; });
      var prev = -1;
      c.forEach(function (p) { if (p.i !== prev) { out.push([X(pts[p.i][0]), Y(pts[p.i][vi])]); prev = p.i; } });
    }
    for (; i < pts.length; i++) {
      var p = pts[i];
      if (skip && skip(p)) continue;
      var cx = Math.round(X(p[0])), v = p[vi], q = { i: i, v: v };
      if (cx !== col) { flush(); col = cx; first = lo = hi = last = q; }
      else { if (v < lo.v) lo = q; if (v > hi.v) hi = q; last = q; }
      if (p[0] > t1) break;
    }
    flush();
    return out;
  }
  function pathOf(pp, step) {
    if (!pp.length) return '';
    var d = 'M' + pp[0][0].toFixed(1) + ' ' + pp[0][1].toFixed(1);
    for (var i = 1; i < pp.length; i++) {
      if (step) d += 'H' + pp[i][0].toFixed(1) + 'V' + pp[i][1].toFixed(1);
      else d += 'L' + pp[i][0].toFixed(1) + ' ' + pp[i][1].toFixed(1);
    }
    return d;
  }

  // ---- charts ----------------------------------------------------------
  // A group of charts shares the time axis of one connection: a drag on
  // any of them zooms all; a double click goes back to the whole.
  function Group(t0, t1) {
    this.full = [t0, t1];
    this.x = [t0, t1];
    this.charts = [];
  }
  Group.prototype.set = function (x) {
    this.x = x;
    this.charts.forEach(function (c) { c.render(); });
    // The view is in the address (#t=from,to), to share or reload.
    try {
      var full = x[0] === this.full[0] && x[1] === this.full[1];
      history.replaceState(null, '', full ? location.pathname : '#t=' + x[0].toFixed(6) + ',' + x[1].toFixed(6));
    } catch (e) { /* a page opened from a file may not rewrite its address */ }
  };
  // initialView reads #t=from,to.
  function initialView() {
    var m = /t=(-?[\d.]+),(-?[\d.]+)/.exec(location.hash || '');
    if (!m) return null;
    var a = parseFloat(m[1]), b = parseFloat(m[2]);
    return b > a ? [a, b] : null;
  }

  var M = { l: 74, r: 18, t: 24, b: 30 };

  function Chart(parent, group, opt) {
    var self = this;
    this.opt = opt;
    this.group = group;
    this.W = opt.width || chartWidth();
    this.svg = svg('svg', { class: 'chart ' + (opt.cls || ''), width: this.W }, parent);
    var defs = svg('defs', {}, this.svg);
    // A title wider than the chart (a narrow window, long IPv6
    // addresses) wraps, and a legend that does not fit beside its last
    // line goes on rows of its own below it; the plot area keeps its
    // height and moves down (this.mt, the top margin).
    var lines = this.title(opt.title);
    var extra = (lines.length - 1) * 15 + this.legend(opt.legend || [], lines[lines.length - 1]);
    this.mt = M.t + extra;
    this.H = opt.height + extra;
    this.svg.setAttribute('height', this.H);
    this.svg.setAttribute('viewBox', '0 0 ' + this.W + ' ' + this.H);
    var id = 'clip' + (Chart.n = (Chart.n || 0) + 1);
    var cp = svg('clipPath', { id: id }, defs);
    svg('rect', { x: M.l, y: this.mt, width: this.W - M.l - M.r, height: this.H - this.mt - M.b }, cp);
    this.gGrid = svg('g', { class: 'grid' }, this.svg);
    this.gAxes = svg('g', { class: 'axis' }, this.svg);
    this.plot = svg('g', { 'clip-path': 'url(#' + id + ')', class: 'plot' }, this.svg);
    this.overlay = svg('rect', { class: 'overlay', x: M.l, y: this.mt, width: this.W - M.l - M.r, height: this.H - this.mt - M.b }, this.svg);
    this.brush = svg('rect', { class: 'brush', visibility: 'hidden' }, this.svg);
    this.y = opt.ydom ? opt.ydom.slice() : [0, 1];
    this.items = [];
    var start = null;
    function pos(ev) {
      var r = self.svg.getBoundingClientRect();
      return [(ev.clientX - r.left) * self.W / r.width, (ev.clientY - r.top) * self.H / r.height];
    }
    this.overlay.addEventListener('mousedown', function (ev) { start = pos(ev); ev.preventDefault(); });
    this.overlay.addEventListener('mousemove', function (ev) {
      var p = pos(ev);
      if (start) {
        var x0 = Math.min(start[0], p[0]), x1 = Math.max(start[0], p[0]);
        var y0 = opt.zoomY ? Math.min(start[1], p[1]) : self.mt, y1 = opt.zoomY ? Math.max(start[1], p[1]) : self.H - M.b;
        self.brush.setAttribute('x', x0); self.brush.setAttribute('y', y0);
        self.brush.setAttribute('width', x1 - x0); self.brush.setAttribute('height', y1 - y0);
        self.brush.setAttribute('visibility', 'visible');
        hideTip();
        return;
      }
      var best = null, bd = 100;
      for (var i = 0; i < self.items.length; i++) {
        var it = self.items[i], dx = it[0] - p[0], dy = it[1] - p[1], dd = dx * dx + dy * dy;
        if (dd < bd) { bd = dd; best = it; }
      }
      if (best) showTip(typeof best[2] === 'function' ? best[2]() : best[2], ev); else hideTip();
    });
    this.overlay.addEventListener('mouseleave', hideTip);
    window.addEventListener('mouseup', function (ev) {
      if (!start) return;
      var p = pos(ev), s = start;
      start = null;
      self.brush.setAttribute('visibility', 'hidden');
      if (Math.abs(p[0] - s[0]) < 5) return;
      var X = lin(self.group.x[0], self.group.x[1], M.l, self.W - M.r);
      if (opt.zoomY && Math.abs(p[1] - s[1]) >= 5) {
        var Y = lin(self.y[0], self.y[1], self.H - M.b, self.mt);
        self.y = [Y.inv(Math.max(s[1], p[1])), Y.inv(Math.min(s[1], p[1]))];
        self.yZoomed = true;
      }
      self.group.set([X.inv(Math.min(s[0], p[0])), X.inv(Math.max(s[0], p[0]))]);
    });
    this.overlay.addEventListener('dblclick', function () {
      self.group.charts.forEach(function (c) { c.y = c.opt.ydom ? c.opt.ydom.slice() : c.y; c.yZoomed = false; });
      self.group.set(self.group.full.slice());
    });
    group.charts.push(this);
  }
  // title writes s on lines of 15 px that fit the chart, cut at spaces
  // (at most four: the last takes the rest), and returns them.
  Chart.prototype.title = function (s) {
    var room = this.W - M.l - M.r, lines = [], rest = s;
    for (var n = 0; rest && n < 4; n++) {
      var t = txt(this.svg, M.l, 15 + 15 * n, rest, { class: 'title' }), cut = rest.length;
      while (n < 3 && t.getComputedTextLength() > room) {
        var sp = rest.lastIndexOf(' ', cut - 1);
        if (sp <= 0) break;
        cut = sp;
        t.textContent = rest.slice(0, cut);
      }
      lines.push(t);
      rest = rest.slice(cut).replace(/^ +/, '');
    }
    return lines;
  };
  // legend lays out the entries ([class, text, a tick rather than a
  // line]) right of the title's last line, or on rows below it when they
  // do not fit there; it returns the height those rows add.
  Chart.prototype.legend = function (entries, title) {
    var g = svg('g', { class: 'legend' }, this.svg), W = this.W, items = [], total = 0;
    entries.forEach(function (e) {
      var t = txt(g, 0, 15, e[1]);
      // measured once laid out; estimated in a page not shown
      var w = (t.getComputedTextLength() || e[1].length * 6.2) + 22;
      items.push({ t: t, sw: svg('path', { class: e[0] }, g), w: w, tick: e[2] });
      total += w;
    });
    function place(it, x, y) {
      it.t.setAttribute('x', x + 16);
      it.t.setAttribute('y', y);
      it.sw.setAttribute('d', it.tick ? 'M' + (x + 7) + ' ' + (y - 9) + 'V' + (y + 1) : 'M' + (x + 2) + ' ' + (y - 4) + 'H' + (x + 13));
    }
    var titleEnd = M.l + (title.getComputedTextLength() || title.textContent.length * 7) + 16;
    var ty = +title.getAttribute('y');
    if (W - M.r - total >= titleEnd) {
      for (var i = items.length - 1, x = W - M.r; i >= 0; i--) { x -= items[i].w; place(items[i], x, ty); }
      return 0;
    }
    var rows = 1, rx = M.l, ry = ty + 16;
    items.forEach(function (it) {
      if (rx > M.l && rx + it.w > W - M.r) { rx = M.l; ry += 16; rows++; }
      place(it, rx, ry);
      rx += it.w;
    });
    return rows * 16;
  };
  Chart.prototype.render = function () {
    var o = this.opt, W = this.W, H = this.H;
    while (this.plot.firstChild) this.plot.removeChild(this.plot.firstChild);
    while (this.gAxes.firstChild) this.gAxes.removeChild(this.gAxes.firstChild);
    while (this.gGrid.firstChild) this.gGrid.removeChild(this.gGrid.firstChild);
    var xd = this.group.x;
    if (o.fitY && !this.yZoomed) this.y = o.fitY(xd[0], xd[1]);
    var X = lin(xd[0], xd[1], M.l, W - M.r), Y = lin(this.y[0], this.y[1], H - M.b, this.mt), mt = this.mt;
    if (o.log) { // this.y holds log10 of the range
      var Yl = Y;
      Y = function (v) { return Yl(Math.log10(Math.max(v, o.log))); };
      Y.inv = function (p) { return Math.pow(10, Yl.inv(p)); };
    }
    this.X = X; this.Y = Y;
    var xt = ticks(xd[0], xd[1], Math.max(2, Math.floor((W - M.l - M.r) / 90)));
    xt.values.forEach(function (v) {
      var px = X(v);
      svg('line', { x1: px, x2: px, y1: mt, y2: H - M.b }, this.gGrid);
      svg('line', { x1: px, x2: px, y1: H - M.b, y2: H - M.b + 4 }, this.gAxes);
      if (px < W - 20) txt(this.gAxes, px, H - M.b + 15, fmtTick(v, xt.step), { 'text-anchor': 'middle' });
    }, this);
    txt(this.gAxes, W - M.r, H - 3, 'time (s)', { 'text-anchor': 'end' });
    if (!o.noY) {
      var yt = ticks(this.y[0], this.y[1], Math.max(2, Math.floor((H - mt - M.b) / 40)), !o.yfmt, !o.yfmt || o.whole);
      if (o.log) { // powers of ten
        yt = { values: [], step: 1 };
        for (var e = Math.ceil(this.y[0]); e <= Math.floor(this.y[1]); e++) yt.values.push(Math.pow(10, e));
      }
      yt.values.forEach(function (v) {
        var py = Y(v);
        svg('line', { x1: M.l, x2: W - M.r, y1: py, y2: py }, this.gGrid);
        svg('line', { x1: M.l - 4, x2: M.l, y1: py, y2: py }, this.gAxes);
        var label = o.log ? String(v) : o.yfmt ? o.yfmt(v, yt.step) : fmtByteTick(v, yt.step, yt.unit);
        txt(this.gAxes, M.l - 6, py + 3.5, label, { 'text-anchor': 'end' });
      }, this);
      if (o.ylabel) txt(this.gAxes, 12, mt + (H - mt - M.b) / 2, o.ylabel, { transform: 'rotate(-90 12 ' + (mt + (H - mt - M.b) / 2) + ')', 'text-anchor': 'middle' });
    }
    svg('path', { d: 'M' + M.l + ' ' + mt + 'V' + (H - M.b) + 'H' + (W - M.r) }, this.gAxes);
    this.items = [];
    o.draw(this, X, Y, xd[0], xd[1]);
  };
  Chart.prototype.path = function (cls, d) { if (d) svg('path', { class: cls, d: d }, this.plot); };
  Chart.prototype.item = function (x, y, text) { this.items.push([x, y, text]); };

  // the width inside a section: main's padding (20 px a side) and the
  // section's padding and border (15 px a side) off the page's width
  function chartWidth() { return Math.max(760, Math.min(1500, (main.clientWidth || 1200) - 70)); }

  // ---- the time-sequence graph -----------------------------------------
  function tsg(sec, conn, group, d) {
    var segs = conn.segs, o = 1 - d, fl = conn.flows[d];
    var from = conn.ends[d].addr, to = conn.ends[o].addr;
    function yExtent(t0, t1) {
      var lo = Infinity, hi = -Infinity;
      var i = Math.max(0, lower(segs, t0, function (s) { return s.t; }) - 1);
      for (; i < segs.length && segs[i].t <= t1; i++) {
        var s = segs[i];
        if ((s.d || 0) === d) { lo = Math.min(lo, s.s); hi = Math.max(hi, s.s + (s.l || 0) + 1); }
        else if (s.f.indexOf('.') >= 0) { lo = Math.min(lo, s.a || 0); hi = Math.max(hi, s.a || 0); }
      }
      if (!isFinite(lo)) { lo = 0; hi = Math.max(1, fl.bytes); }
      var pad = (hi - lo) * 0.04 + 1;
      return [lo - pad, hi + pad];
    }
    var c = new Chart(sec, group, {
      cls: 'tsg', height: 430, zoomY: true, fitY: yExtent,
      title: 'time-sequence graph: ' + from + ' → ' + to + ' (sequence numbers relative to the ISN)',
      ylabel: 'sequence number (bytes)',
      legend: [['data', 'data', 1], ['retx', 'retransmission', 1], ['probe', 'probe', 1], ['drop', 'drop ✕'], ['ack', 'ACK'], ['rwnd', 'receive window'], ['sack', 'SACK', 1]],
      draw: function (ch, X, Y, t0, t1) {
        var i0 = Math.max(0, lower(segs, t0, function (s) { return s.t; }) - 1);
        var plain = {}, cols = [], ackPts = [], winPts = [];
        var retx = '', probe = '', sack = '', drop = '', acklost = '', sackSeen = {};
        var ctl = [];
        for (var i = i0; i < segs.length; i++) {
          var s = segs[i];
          if (s.t > t1) { // one beyond, so lines reach the edge
            if ((s.d || 0) === o && s.f.indexOf('.') >= 0 && !s.x) { ackPts.push([s.t, s.a || 0, s]); winPts.push([s.t, (s.a || 0) + s.w, s]); }
            break;
          }
          var x = X(s.t), sd = s.d || 0;
          if (sd === d) {
            var end = s.s + (s.l || 0);
            if (s.x) { // dropped: never left out of the picture
              var yy = Y(s.s + (s.l || 0) / 2);
              drop += 'M' + (x - 4) + ' ' + (yy - 4) + 'l8 8m0 -8l-8 8';
              ch.item(x, yy, segText(s, conn));
              if (s.m !== 'retx' && s.m !== 'probe') continue; // a lost retransmission is still a retransmission
            }
            if (s.f.indexOf('S') >= 0 || s.f.indexOf('F') >= 0 || s.f.indexOf('R') >= 0) {
              ctl.push(s);
            }
            if (!s.l) {
              if (s.m === 'probe') { probe += 'M' + x + ' ' + (Y(s.s) - 5) + 'v10'; ch.item(x, Y(s.s), segText(s, conn)); }
              continue;
            }
            var y0 = Y(s.s), y1 = Y(end);
            if (y0 - y1 < 1.2) { y0 += 0.6; y1 -= 0.6; }
            if (s.m === 'retx') { retx += 'M' + x.toFixed(1) + ' ' + y0.toFixed(1) + 'V' + y1.toFixed(1); ch.item(x, (y0 + y1) / 2, segText(s, conn)); continue; }
            if (s.m === 'probe') { probe += 'M' + x.toFixed(1) + ' ' + y0.toFixed(1) + 'V' + y1.toFixed(1); ch.item(x, (y0 + y1) / 2, segText(s, conn)); continue; }
            var cx = Math.round(x), b = plain[cx];
            if (!b) { b = plain[cx] = { lo: s.s, hi: end, n: 0, first: s, last: s }; cols.push(cx); }
            b.lo = Math.min(b.lo, s.s); b.hi = Math.max(b.hi, end); b.n++; b.last = s;
          } else {
            if (s.f.indexOf('.') < 0) continue;
            var a = s.a || 0;
            if (s.x) { // an ACK dropped on the way: it never arrived
              acklost += 'M' + (x - 3) + ' ' + (Y(a) - 3) + 'l6 6m0 -6l-6 6';
              ch.item(x, Y(a), segText(s, conn));
              continue;
            }
            ackPts.push([s.t, a, s]);
            winPts.push([s.t, a + s.w, s]);
            if (s.k) s.k.forEach(function (blk) {
              var ya = Y(blk[0]), yb = Y(blk[1]), key = Math.round(x) + ':' + Math.round(ya) + ':' + Math.round(yb);
              if (sackSeen[key]) return;
              sackSeen[key] = 1;
              sack += 'M' + x.toFixed(1) + ' ' + ya.toFixed(1) + 'V' + Math.min(yb, ya - 1).toFixed(1);
            });
          }
        }
        var data = '';
        cols.forEach(function (cx) {
          var b = plain[cx], y0 = Y(b.lo), y1 = Y(b.hi);
          if (y0 - y1 < 1.2) { y0 += 0.6; y1 -= 0.6; }
          data += 'M' + cx + ' ' + y0.toFixed(1) + 'V' + y1.toFixed(1);
          if (b.n === 1) ch.item(cx, (y0 + y1) / 2, segText(b.first, conn));
          else ch.item(cx, (y0 + y1) / 2, (function (b) {
            return function () {
              return b.n + ' data segments merged on this pixel column: frames ' + b.first.no + '–' + b.last.no +
                ', seq ' + b.lo + ':' + b.hi + '\n(drag to zoom in)\n\nlast: ' + segText(b.last, conn);
            };
          })(b));
        });
        var ap = decimate(ackPts, 1, X, Y, t0, t1), wp = decimate(winPts, 1, X, Y, t0, t1);
        ch.path('rwnd', pathOf(wp, true));
        ch.path('ack', pathOf(ap, true));
        ch.path('sack', sack);
        ch.path('data', data);
        ch.path('retx', retx);
        ch.path('probe', probe);
        ch.path('drop', drop);
        ch.path('acklost', acklost);
        // hover on the ACK line: one item per column, the last ACK there
        var lastCol = null;
        for (var j = ackPts.length - 1; j >= 0; j--) {
          var p = ackPts[j], px = Math.round(X(p[0]));
          if (px === lastCol) continue;
          lastCol = px;
          ch.item(px, Y(p[1]), segText(p[2], conn));
        }
        ctl.forEach(function (s) {
          var x = X(s.t), y = Y(s.f.indexOf('F') >= 0 ? s.s + (s.l || 0) : s.s);
          var cls = s.f.indexOf('R') >= 0 ? 'rst' : 'ctl';
          svg('path', { class: cls, d: 'M' + x + ' ' + (y - 5) + 'l4 5l-4 5l-4 -5z' }, ch.plot);
          ch.item(x, y, segText(s, conn));
        });
      }
    });
    return c;
  }

  // ---- congestion window, in flight ----------------------------------
  function cwndChart(sec, conn, group) {
    var se = conn.series, cw = se.cwnd || [];
    var infl = se.inflight || [[], []];
    var hi = 1;
    cw.forEach(function (p) { hi = Math.max(hi, p[1]); if (p[2] > 0 && p[2] < 1e9) hi = Math.max(hi, p[2]); });
    [0, 1].forEach(function (d) { (infl[d] || []).forEach(function (p) { hi = Math.max(hi, p[1]); }); });
    var legend = [];
    if (cw.length) legend.push(['cwnd', 'cwnd (engine)'], ['ssthresh', 'ssthresh (engine)']);
    legend.push(['inflight', 'in flight ' + conn.ends[0].addr + ' → (' + (se.inflightEngine ? 'engine' : 'wire: SND.NXT − SND.UNA') + ')']);
    if ((infl[1] || []).length) legend.push(['inflight1', 'in flight ← (wire)']);
    if ((se.recovery || []).length) legend.push(['recovery', 'recovery', 1]);
    if ((se.rtoFired || []).length) legend.push(['rtoline', 'RTO fired', 1]);
    var c = new Chart(sec, group, {
      cls: 'cwnd', height: 230, ydom: [0, hi * 1.08],
      title: cw.length ? 'congestion window, ssthresh and bytes in flight' : 'bytes in flight (no engine events in this capture: no cwnd)',
      ylabel: 'bytes', legend: legend,
      draw: function (ch, X, Y, t0, t1) {
        [1, 0].forEach(function (d) {
          var pts = infl[d] || [];
          ch.path(d ? 'inflight1' : 'inflight', pathOf(decimate(pts, 1, X, Y, t0, t1), true));
        });
        ch.path('cwnd', pathOf(decimate(cw, 1, X, Y, t0, t1), true));
        var ss = [], seg = [];
        cw.forEach(function (p) { if (p[2] > 0) seg.push([p[0], p[2]]); else if (seg.length) { ss.push(seg); seg = []; } });
        if (seg.length) ss.push(seg);
        ss.forEach(function (s) { ch.path('ssthresh', pathOf(decimate(s, 1, X, Y, t0, t1), true)); });
        // hover: cwnd points per column
        var k = lower(cw, t0, function (p) { return p[0]; });
        var col = null;
        for (; k < cw.length && cw[k][0] <= t1; k++) {
          var px = Math.round(X(cw[k][0]));
          if (px === col) continue;
          col = px;
          var p = cw[k];
          ch.item(px, Y(p[1]), fmtT(p[0]) + '\ncwnd ' + p[1] + ' bytes' + (p[2] > 0 ? ', ssthresh ' + p[2] : ', ssthresh ∞'));
        }
        var rl = '';
        (se.recovery || []).forEach(function (m) {
          if (m.t < t0 || m.t > t1) return;
          var x = X(m.t);
          rl += 'M' + x + ' ' + ch.mt + 'v10';
          ch.item(x, ch.mt + 6, fmtT(m.t) + '\n' + m.text);
        });
        ch.path('recovery', rl);
        var ro = '';
        (se.rtoFired || []).forEach(function (r) {
          if (r[0] < t0 || r[0] > t1) return;
          var x = X(r[0]);
          ro += 'M' + x + ' ' + ch.mt + 'V' + (ch.H - M.b);
          ch.item(x, ch.mt + 14, fmtT(r[0]) + '\nretransmission timeout fired; RTO now ' + r[1] + ' ms');
        });
        ch.path('rtoline', ro);
      }
    });
    return c;
  }

  // ---- RTT -------------------------------------------------------------
  function rttChart(sec, conn, group) {
    var se = conn.series, rt = se.rtt || [[], []];
    var d = (rt[0] || []).length >= (rt[1] || []).length ? 0 : 1;
    var pts = rt[d] || [];
    // A log scale: an SRTT of 0.1 ms and an RTO of 200 ms on one chart.
    var hi = 1, lo = 1e9;
    pts.forEach(function (p) { hi = Math.max(hi, p[1], p[2], p[3]); if (p[1] > 0) lo = Math.min(lo, p[1]); if (p[2] > 0) lo = Math.min(lo, p[2]); });
    (se.rtoFired || []).forEach(function (r) { hi = Math.max(hi, r[1]); });
    hi = Math.min(hi, 130000);
    lo = Math.max(0.001, Math.min(lo, hi / 10));
    // The key names what is drawn: the engine's events carry SRTT and
    // RTO, no samples; the timer fires only on a loss.
    var legend = [['srtt', 'SRTT'], ['rto', 'RTO']];
    if (pts.some(function (p) { return p[1] >= 0; })) legend.unshift(['sample', 'RTT sample', 1]);
    if ((se.rtoFired || []).length) legend.push(['rtoline', 'RTO fired (engine)', 1]);
    var src = se.rttEngine ? 'engine' : 'wire: RFC 6298 over Karn samples at the capture point, RTO floor ' + se.minRto + ' ms';
    var c = new Chart(sec, group, {
      cls: 'rtt', height: 210, ydom: [Math.log10(lo) - 0.1, Math.log10(hi) + 0.1], log: 0.001,
      title: 'RTT, SRTT and RTO of ' + conn.ends[d].addr + ' → (' + src + ')',
      ylabel: 'ms (log scale)',
      legend: legend,
      draw: function (ch, X, Y, t0, t1) {
        var sp = decimate(pts.filter(function (p) { return p[1] >= 0; }), 1, X, Y, t0, t1), dots = '';
        sp.forEach(function (p) { dots += 'M' + p[0].toFixed(1) + ' ' + p[1].toFixed(1) + 'h0.01'; });
        ch.path('sample', dots);
        ch.path('srtt', pathOf(decimate(pts, 2, X, Y, t0, t1), true));
        ch.path('rto', pathOf(decimate(pts, 3, X, Y, t0, t1), true));
        var k = lower(pts, t0, function (p) { return p[0]; }), col = null;
        for (; k < pts.length && pts[k][0] <= t1; k++) {
          var px = Math.round(X(pts[k][0]));
          if (px === col) continue;
          col = px;
          var p = pts[k];
          ch.item(px, Y(p[2]), fmtT(p[0]) + (p[1] >= 0 ? '\nsample ' + p[1] + ' ms' : '') + '\nSRTT ' + p[2] + ' ms, RTO ' + p[3] + ' ms');
        }
        var ro = '';
        (se.rtoFired || []).forEach(function (r) {
          if (r[0] < t0 || r[0] > t1) return;
          var x = X(r[0]), y = Y(Math.min(r[1], hi));
          ro += 'M' + x + ' ' + ch.mt + 'V' + (ch.H - M.b);
          svg('circle', { class: 'rtofired', cx: x, cy: y, r: 3.5 }, ch.plot);
          ch.item(x, y, fmtT(r[0]) + '\nretransmission timeout fired; RTO backed off to ' + r[1] + ' ms');
        });
        ch.path('rtoline', ro);
      }
    });
    return c;
  }

  // ---- state timelines ---------------------------------------------------
  var stateColor = {
    'CLOSED': '#e5e7eb', 'LISTEN': '#c7d2fe', 'SYN-SENT': '#fde68a', 'SYN-RECEIVED': '#fcd34d',
    'ESTABLISHED': '#86efac', 'FIN-WAIT-1': '#fdba74', 'FIN-WAIT-2': '#fb923c', 'CLOSE-WAIT': '#93c5fd',
    'CLOSING': '#f9a8d4', 'LAST-ACK': '#60a5fa', 'TIME-WAIT': '#c4b5fd'
  };
  function stText(s) {
    return fmtT(s.t) + '\n' + (s.from ? s.from + ' → ' : '') + s.to + (s.cause ? '\ncause: ' + s.cause : '') + (s.no ? '\nframe ' + s.no : '');
  }
  function stateChart(sec, conn, group) {
    var rows = [0, 1].map(function (e) {
      var en = conn.ends[e];
      return { label: en.addr + ' (' + en.role + ', ' + (en.states === 'engine' ? 'engine events' : 'from the wire') + ')', st: conn.states[e] || [] };
    });
    var c = new Chart(sec, group, {
      cls: 'states', height: M.t + M.b + rows.length * 40 + 6, noY: true,
      title: 'state timeline (RFC 9293 states; hover a change for its cause)',
      draw: function (ch, X, Y, t0, t1) {
        rows.forEach(function (r, i) {
          var y = ch.mt + 14 + i * 40, g = svg('g', { class: 'state' }, ch.plot);
          txt(ch.plot, M.l + 4, y - 3, r.label, { style: 'font-size:10px;fill:#667085' });
          var st = r.st;
          for (var k = 0; k < st.length; k++) {
            var a = st[k].t, b = k + 1 < st.length ? st[k + 1].t : Math.max(group.full[1], a);
            if (b < t0 || a > t1) continue;
            var xa = Math.max(M.l, X(a)), xb = Math.min(ch.W - M.r, X(b)), w = Math.max(1.5, xb - xa);
            svg('rect', { x: xa, y: y + 2, width: w, height: 18, fill: stateColor[st[k].to] || '#ddd' }, g);
            if (w > st[k].to.length * 6.3 + 6) txt(g, xa + 3, y + 15, st[k].to);
            var x = X(a);
            svg('line', { class: 'tick', x1: x, x2: x, y1: y, y2: y + 22 }, g);
            ch.item(x, y + 11, stText(st[k]));
          }
          // Changes right of the view (TIME-WAIT's end, 2*MSL after the
          // last frame) are named at the edge, so none is out of sight.
          var later = st.filter(function (x) { return x.t > t1; });
          if (later.length) {
            var n = later[0], ex = ch.W - M.r - 2;
            txt(ch.plot, ex, y - 3, '→ ' + n.to + ' at ' + fmtT(n.t) + (n.cause ? ' (' + n.cause + ')' : '') +
              (later.length > 1 ? ' and ' + (later.length - 1) + ' more' : '') + ' ▸', { class: 'later', 'text-anchor': 'end' });
            ch.item(ex - 6, y - 6, later.map(stText).join('\n\n'));
          }
        });
      }
    });
    return c;
  }

  // ---- ladder diagram ------------------------------------------------------
  function ladder(sec, conn) {
    var rows = conn.ladder || [], W = chartWidth(), rowH = 30, top = 44;
    var H = top + rows.length * rowH + 16;
    var s = svg('svg', { class: 'chart ladder', width: W, height: H, viewBox: '0 0 ' + W + ' ' + H }, sec);
    var defs = svg('defs', {}, s);
    var mkid = 'arrowhead' + (ladder.n = (ladder.n || 0) + 1);
    var mk = svg('marker', { id: mkid, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, defs);
    svg('path', { d: 'M0 0L10 5L0 10z', fill: '#334155' }, mk);
    txt(s, 10, 15, 'ladder diagram: the first and last frames (hover an arrow for its comment)', { class: 'title' });
    var xa = Math.round(W * 0.30), xb = Math.round(W * 0.70);
    txt(s, xa, 34, conn.ends[0].addr + ' (' + conn.ends[0].role + ')', { 'text-anchor': 'middle', class: 'title' });
    txt(s, xb, 34, conn.ends[1].addr + ' (' + conn.ends[1].role + ')', { 'text-anchor': 'middle', class: 'title' });
    svg('line', { class: 'lane', x1: xa, x2: xa, y1: top, y2: H - 8 }, s);
    svg('line', { class: 'lane', x1: xb, x2: xb, y1: top, y2: H - 8 }, s);
    var items = [];
    rows.forEach(function (idx, r) {
      var y = top + r * rowH + 8;
      if (idx < 0) {
        var hidden = conn.segs.length - (rows.length - 1);
        txt(s, (xa + xb) / 2, y + 10, '⋯ ' + hidden + ' frames not shown ⋯', { 'text-anchor': 'middle' });
        return;
      }
      var g = conn.segs[idx], d = g.d || 0;
      var x0 = d === 0 ? xa : xb, x1 = d === 0 ? xb : xa;
      var cls = 'arrow' + (g.m === 'retx' ? ' retx' : g.m === 'probe' ? ' probe' : '');
      var xe = x1;
      if (g.x) { xe = x0 + (x1 - x0) * 0.55; cls = 'arrow lost'; }
      svg('line', { class: cls, x1: x0, y1: y, x2: xe, y2: y + rowH * 0.55, 'marker-end': g.x ? undefined : 'url(#' + mkid + ')' }, s);
      if (g.x) txt(s, xe - 5, y + rowH * 0.55 + 5, '✕', { class: 'x' });
      var label = '[' + g.f + '] seq ' + g.s + (g.l ? ':' + (g.s + g.l) : '') + (g.f.indexOf('.') >= 0 ? ' ack ' + (g.a || 0) : '') + ' win ' + g.w;
      txt(s, (xa + xb) / 2, y + 2, label, { 'text-anchor': 'middle', class: 'label' });
      txt(s, 8, y + 10, '#' + g.no + '  ' + g.t.toFixed(6), { class: 'label' });
      var cm = g.c || (g.m ? g.m + (g.y ? ': ' + g.y : '') : '');
      if (cm) {
        // the comment beside the receiving end, cut to the room there
        var room = d === 0 ? W - 8 - (xb + 8) : xa - 8 - 140, max = Math.max(8, Math.floor(room / 5.6));
        var short = cm.length > max ? cm.slice(0, max - 1) + '…' : cm;
        txt(s, d === 0 ? xb + 8 : xa - 8, y + 12, short, { class: 'cmt', 'text-anchor': d === 0 ? 'start' : 'end' });
      }
      items.push([(xa + xb) / 2, y + rowH * 0.3, segText(g, conn)]);
    });
    s.addEventListener('mousemove', function (ev) {
      var rr = s.getBoundingClientRect(), py = (ev.clientY - rr.top) * H / rr.height, best = null, bd = rowH / 2;
      items.forEach(function (it) { var dd = Math.abs(it[1] - py); if (dd < bd) { bd = dd; best = it; } });
      if (best) showTip(best[2], ev); else hideTip();
    });
    s.addEventListener('mouseleave', hideTip);
  }

  // ---- listeners -------------------------------------------------------------
  function listenerChart(sec, l) {
    var q = l.queues || [], t0 = Infinity, t1 = -Infinity, hi = 1;
    q.forEach(function (p) { t0 = Math.min(t0, p[0]); t1 = Math.max(t1, p[0]); hi = Math.max(hi, p[1], p[3]); });
    (l.states || []).forEach(function (s) { t0 = Math.min(t0, s.t); t1 = Math.max(t1, s.t); });
    if (!isFinite(t0)) return;
    if (t1 - t0 < 1e-3) { t0 -= 5e-4; t1 += 5e-4; }
    var pad = (t1 - t0) * 0.03;
    var group = new Group(t0 - pad, t1 + pad);
    var limits = q.length ? q[q.length - 1] : null;
    // Each limit is drawn when it fits the chart without flattening the
    // queues (at most four times their peak): an accept queue of 1 at its
    // limit of 1 shows as full beside a SYN queue limit of 1024 left out.
    var showSyn = limits && limits[2] <= hi * 4, showAcc = limits && limits[4] <= hi * 4;
    var top = Math.max(hi, showSyn ? limits[2] : 0, showAcc ? limits[4] : 0);
    var legend = [['synq', 'SYN queue'], ['accq', 'accept queue']];
    if (showSyn) legend.push(['synq limit', 'SYN queue limit']);
    if (showAcc) legend.push(['accq limit', 'accept queue limit']);
    var c = new Chart(sec, group, {
      cls: 'queues', height: 220, ydom: [0, top * 1.15 + 0.5],
      title: 'SYN queue and accept queue of ' + l.addr + (limits ? ' (limits ' + limits[2] + ' and ' + limits[4] + ')' : ''),
      ylabel: 'entries', yfmt: function (v, st) { return fmtTick(v, st); }, whole: true,
      legend: legend,
      draw: function (ch, X, Y, a, b) {
        var sp = q.map(function (p) { return [p[0], p[1]]; }), ap = q.map(function (p) { return [p[0], p[3]]; });
        ch.path('synq', pathOf(decimate(sp, 1, X, Y, a, b), true));
        ch.path('accq', pathOf(decimate(ap, 1, X, Y, a, b), true));
        if (showSyn) ch.path('synq limit', 'M' + M.l + ' ' + Y(limits[2]) + 'H' + (ch.W - M.r));
        if (showAcc) ch.path('accq limit', 'M' + M.l + ' ' + Y(limits[4]) + 'H' + (ch.W - M.r));
        (l.decisions || []).forEach(function (m, i) {
          if (m.t < a || m.t > b) return;
          var bad = /drop|overflow|full|reject/i.test(m.text), x = X(m.t), y = Y(q[i] ? q[i][3] : 0);
          svg('circle', { class: 'decision' + (bad ? ' bad' : ''), cx: x, cy: y, r: bad ? 4 : 3 }, ch.plot);
          ch.item(x, y, fmtT(m.t) + '\n' + m.text);
        });
        (l.states || []).forEach(function (s) {
          var x = X(s.t);
          ch.item(x, ch.mt + 4, fmtT(s.t) + '\nlistener ' + s.from + ' → ' + s.to + (s.cause ? ' (' + s.cause + ')' : ''));
        });
      }
    });
    c.render();
  }

  // ---- the page ------------------------------------------------------------
  var sum = document.getElementById('summary');
  var meta = html('div', 'meta', null, sum);
  meta.innerHTML = '';
  [['start', D.start || '—'], ['frames', D.frames], ['TCP connections', D.conns.length], ['listeners', D.listeners.length],
    ['engine events', D.annotated ? D.events : 'none (not a tapstack capture: marks and states read off the wire)']].forEach(function (kv, i) {
      if (i) meta.appendChild(document.createTextNode(' · '));
      meta.appendChild(document.createTextNode(kv[0] + ' '));
      html('b', '', String(kv[1]), meta);
    });
  html('div', 'hint', 'Drag across a chart to zoom (on the time-sequence graph, a rectangle); double-click to zoom out. Hover a mark for its frame number and comment, as Wireshark numbers frames.', sum);

  function connSummary(conn) {
    var f0 = conn.flows[0], f1 = conn.flows[1];
    return (conn.end - conn.start).toFixed(6) + ' s · ' + conn.segs.length + ' frames · ' +
      conn.ends[0].addr + ' → ' + fmtBytes(f0.bytes) + ' in ' + f0.segments + ' segments, ' + f0.retx + ' retransmitted, ' + f0.drops + ' dropped · ' +
      conn.ends[1].addr + ' → ' + fmtBytes(f1.bytes) + ' in ' + f1.segments + ' segments, ' + f1.retx + ' retransmitted, ' + f1.drops + ' dropped';
  }
  // Many connections (a SYN flood, a busy server): the first ones are
  // drawn at once, the others when asked, so the page opens quickly.
  var drawAtOnce = 12;
  if (D.conns.length > 1) {
    var idx = html('section', 'notes', null, main);
    html('h2', '', D.conns.length + ' connections', idx);
    var ol = html('ol', '', null, idx);
    D.conns.forEach(function (conn, ci) {
      var li = html('li', '', null, ol), a = html('a', '', conn.name, li);
      a.href = '#conn' + ci;
      li.appendChild(document.createTextNode(' · ' + connSummary(conn)));
    });
  }
  D.conns.forEach(function (conn, ci) {
    var sec = html('section', 'conn', null, main);
    sec.id = 'conn' + ci;
    html('h2', '', conn.name, sec);
    html('div', 'meta', connSummary(conn), sec);
    (conn.warnings || []).forEach(function (w) { html('div', 'warn', w, sec); });
    if (ci < drawAtOnce) { drawConn(sec, conn); return; }
    var btn = html('button', '', 'draw this connection', sec);
    btn.addEventListener('click', function () { btn.remove(); drawConn(sec, conn); });
  });
  function drawConn(sec, conn) {
    // The view opens on the frames: the engine's changes after the last
    // one (TIME-WAIT's end, 2*MSL later: 60 s on Linux) would squeeze
    // them into a sliver at the left. Those changes are named at the
    // state timeline's right edge and in the notes.
    var t1 = conn.segs.length ? conn.segs[conn.segs.length - 1].t : conn.end;
    var span = t1 - conn.start, pad = Math.max(span * 0.02, 1e-4);
    var group = new Group(conn.start - pad, t1 + pad);
    var withData = [0, 1].filter(function (d) { return conn.flows[d].bytes > 0; });
    if (!withData.length) withData = [0];
    withData.sort(function (a, b) { return conn.flows[b].bytes - conn.flows[a].bytes; });
    withData.forEach(function (d) { tsg(sec, conn, group, d); });
    cwndChart(sec, conn, group);
    rttChart(sec, conn, group);
    stateChart(sec, conn, group);
    var view = initialView();
    if (view) group.x = view;
    group.charts.forEach(function (c) {
      var t = performance.now();
      c.render();
      var k = (c.opt.cls || 'chart') + ' draw ms';
      times[k] = (times[k] || 0) + performance.now() - t;
    });
    ladder(sec, conn);
    if ((conn.notes || []).length) {
      html('h3', '', 'notes: facts no frame carried', sec);
      var ul = html('ul', '', null, sec);
      conn.notes.forEach(function (n) { html('li', '', fmtT(n.t) + '  ' + n.text, ul); });
    }
  }
  D.listeners.forEach(function (l) {
    var sec = html('section', 'listener', null, main);
    html('h2', '', 'listener ' + l.addr, sec);
    html('div', 'meta', (l.decisions || []).length + ' queue decisions', sec);
    listenerChart(sec, l);
  });
  if ((D.notes || []).length) {
    var ns = html('section', 'notes', null, main);
    html('h2', '', 'notes', ns);
    var ul = html('ul', '', null, ns);
    D.notes.forEach(function (n) { html('li', '', fmtT(n.t) + '  ' + (n.conn ? n.conn + ': ' : '') + n.text, ul); });
  }
  if (!D.conns.length) html('p', 'meta', 'No TCP segments in this capture.', main);
  times.total = performance.now() - T0;
  document.body.setAttribute('data-rendered', 'true');
})();
