/// The web application the browser tests load from their own origin: Strophe.js (Debian's
/// libjs-strophe) with a few functions the tests call, and a DOM the tests read:
/// `#status` (Strophe's connection status), `#jid`, `#messages` (one `<li>` per received chat
/// message: "from | body"), `#errors` (HTTP/WebSocket failures) and `#log`.
///
/// XEP-0198 is not part of Strophe.js 1.2: the page does what a client library would, enabling
/// stream management, counting handled stanzas in sessionStorage, answering `<r/>`, and on
/// reload authenticating again and sending `<resume/>` instead of binding.
enum StropheTestPage {
    static let html = """
        <!doctype html>
        <html><head><meta charset="utf-8"><title>Tether browser test</title></head>
        <body>
        <p id="status">idle</p>
        <p id="jid"></p>
        <p id="errors"></p>
        <ul id="messages"></ul>
        <pre id="log"></pre>
        <script src="/strophe.js"></script>
        <script>
        var SM = 'urn:xmpp:sm:3';
        var conn = null;
        var names = {};
        Object.keys(Strophe.Status).forEach(function (k) { names[Strophe.Status[k]] = k.toLowerCase(); });
        function $(id) { return document.getElementById(id); }
        function log(text) { $('log').textContent += text + '\\n'; }
        function setStatus(text) { $('status').textContent = text; log('status: ' + text); }
        function sm() { return JSON.parse(sessionStorage.getItem('sm') || 'null'); }
        function saveSM(state) { sessionStorage.setItem('sm', JSON.stringify(state)); }

        function onMessage(message) {
          var body = message.getElementsByTagName('body')[0];
          if (body) {
            var item = document.createElement('li');
            item.textContent = message.getAttribute('from') + ' | ' + Strophe.getText(body);
            $('messages').appendChild(item);
          }
          return true;
        }
        function countHandled() {
          var state = sm();
          if (state && state.enabled) { state.h += 1; saveSM(state); }
          return true;
        }
        function installHandlers(streamManagement) {
          conn.addHandler(onMessage, null, 'message');
          if (streamManagement) {
            ['message', 'presence', 'iq'].forEach(function (name) { conn.addHandler(countHandled, null, name); });
            conn.addHandler(function () {
              conn.send($build('a', { xmlns: SM, h: String(sm().h) }));
              return true;
            }, SM, 'r');
          }
        }
        function watchErrors() {
          [0, 403, 404, 500, 502].forEach(function (code) {
            conn.addProtocolErrorHandler('HTTP', code, function () { $('errors').textContent += 'http ' + code + ';'; });
          });
        }
        function callback(status, condition) {
          setStatus(names[status] + (condition ? ':' + condition : ''));
          if (status === Strophe.Status.CONNECTED || status === Strophe.Status.ATTACHED) {
            $('jid').textContent = conn.jid;
          }
        }

        window.client = {
          // BOSH with Strophe's keepalive: sid and rid live in sessionStorage across reloads.
          connectBOSH: function (service, jid, password) {
            conn = new Strophe.Connection(service, { keepalive: true });
            watchErrors();
            conn.connect(jid, password, function (status, condition) {
              callback(status, condition);
              if (status === Strophe.Status.CONNECTED) { installHandlers(false); conn.send($pres()); }
            });
          },
          restoreBOSH: function (service) {
            conn = new Strophe.Connection(service, { keepalive: true });
            watchErrors();
            installHandlers(false);
            try {
              conn.restore(null, callback);
            } catch (e) {
              setStatus('restore-failed:' + (e.message || e.name));
            }
          },
          attachBOSH: function (service, jid, sid, rid) {
            conn = new Strophe.Connection(service);
            watchErrors();
            installHandlers(false);
            conn.attach(jid, sid, rid, function (status, condition) {
              callback(status, condition);
              if (status === Strophe.Status.ATTACHED) { conn.send($pres()); }
            });
          },
          connectWebSocket: function (service, jid, password, streamManagement) {
            var everConnected = false;
            conn = new Strophe.Connection(service);
            conn.connect(jid, password, function (status, condition) {
              callback(status, condition);
              if (status === Strophe.Status.CONNECTED) { everConnected = true; }
              if (status === Strophe.Status.CONNFAIL || (status === Strophe.Status.DISCONNECTED && !everConnected)) {
                $('errors').textContent += 'websocket failed;';
              }
              if (status !== Strophe.Status.CONNECTED) { return; }
              installHandlers(streamManagement);
              if (streamManagement) {
                conn.addHandler(function (enabled) {
                  saveSM({ id: enabled.getAttribute('id'), h: 0, enabled: true, jid: conn.jid, password: password, service: service });
                  $('status').textContent = 'sm-enabled';
                  return false;
                }, SM, 'enabled');
                conn.send($build('enable', { xmlns: SM, resume: 'true' }));
              }
              conn.send($pres());
            });
          },
          // After a reload: authenticate again, then <resume/> instead of binding (XEP-0198 §5).
          resumeWebSocket: function () {
            var state = sm();
            if (!state) { setStatus('nothing-to-resume'); return; }
            conn = new Strophe.Connection(state.service);
            conn._sasl_auth1_cb = function (features) {
              this.features = features;
              this.authenticated = true;
              this.jid = state.jid;
              $('jid').textContent = state.jid;
              installHandlers(true);
              this.addHandler(function (resumed) {
                var current = sm();
                current.id = resumed.getAttribute('previd') || current.id;
                saveSM(current);
                setStatus('resumed');
                return false;
              }, SM, 'resumed');
              this.addHandler(function () { setStatus('resume-failed'); return false; }, SM, 'failed');
              this.send($build('resume', { xmlns: SM, previd: state.id, h: String(state.h) }));
              return false;
            };
            conn.connect(Strophe.getBareJidFromJid(state.jid), state.password, function (status, condition) {
              if (status !== Strophe.Status.CONNECTED) { callback(status, condition); }
            });
          },
          send: function (to, text) {
            conn.send($msg({ to: to, type: 'chat' }).c('body').t(text));
          }
        };
        </script>
        </body></html>
        """
}
