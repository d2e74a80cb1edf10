/// The built-in demo page (`/demo/`, off by default): log in with a JID and password over BOSH or
/// WebSocket and chat. The quickest way for an operator to see a deployment work end to end.
public struct DemoSettings: Hashable, Sendable {
    /// Strophe.js, served as `/demo/strophe.js` (Debian's `libjs-strophe` puts it here).
    public var stropheScript: String

    public init(stropheScript: String = "/usr/share/javascript/strophe/strophe.min.js") {
        self.stropheScript = stropheScript
    }
}

/// The demo page itself: one self-contained HTML document with its script (Strophe.js is served beside it).
enum DemoPage {
    /// Same-origin page: the endpoints are found from its own URL, so it works behind any proxy
    /// that forwards `/demo/`, `/http-bind` and `/xmpp-websocket` together.
    static let html = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Tether demo</title>
        <style>
          body { font: 15px/1.4 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
          fieldset { border: 1px solid #ccc; border-radius: 6px; margin-bottom: 1rem; }
          label { display: inline-block; margin: .25rem .75rem .25rem 0; }
          input[type=text], input[type=password] { width: 14rem; }
          #log { border: 1px solid #ccc; border-radius: 6px; height: 18rem; overflow-y: auto; padding: .5rem; background: #fafafa; }
          #log div { margin: .15rem 0; white-space: pre-wrap; }
          .system { color: #666; font-style: italic; }
          .in b { color: #0a5; } .out b { color: #05a; } .error { color: #b00; }
        </style>
        </head>
        <body>
        <h1>Tether demo</h1>
        <p>Log in through this Tether with an account on its XMPP server, then send messages.</p>
        <fieldset id="login">
          <label>JID <input type="text" id="jid" placeholder="user@example.com" autocomplete="username"></label>
          <label>Password <input type="password" id="password" autocomplete="current-password"></label><br>
          <label><input type="radio" name="transport" value="bosh" checked> BOSH</label>
          <label><input type="radio" name="transport" value="websocket"> WebSocket</label>
          <button id="connect">Connect</button>
          <button id="disconnect" disabled>Disconnect</button>
          <span id="status">disconnected</span>
        </fieldset>
        <div id="log"></div>
        <fieldset>
          <label>To <input type="text" id="to" placeholder="friend@example.com"></label>
          <label>Message <input type="text" id="text"></label>
          <button id="send" disabled>Send</button>
        </fieldset>
        <script src="strophe.js"></script>
        <script>
        (function () {
          var connection = null;
          var $ = function (id) { return document.getElementById(id); };
          function log(kind, who, text) {
            var line = document.createElement('div');
            line.className = kind;
            if (who) { var b = document.createElement('b'); b.textContent = who + ': '; line.appendChild(b); }
            line.appendChild(document.createTextNode(text));
            $('log').appendChild(line);
            $('log').scrollTop = $('log').scrollHeight;
          }
          if (typeof Strophe === 'undefined') {
            log('error', '', 'Strophe.js is not available: install Debian\\'s libjs-strophe or set --demo-strophe-script.');
            return;
          }
          var names = {};
          Object.keys(Strophe.Status).forEach(function (name) { names[Strophe.Status[name]] = name.toLowerCase(); });
          function service(transport) {
            var base = location.pathname.replace(/\\/demo\\/?[^\\/]*$/, '');
            if (transport === 'websocket') {
              return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + base + '/xmpp-websocket';
            }
            return location.origin + base + '/http-bind';
          }
          function connected(on) {
            $('connect').disabled = on; $('disconnect').disabled = !on; $('send').disabled = !on;
          }
          $('connect').onclick = function () {
            var transport = document.querySelector('input[name=transport]:checked').value;
            connection = new Strophe.Connection(service(transport));
            connection.connect($('jid').value, $('password').value, function (status, condition) {
              $('status').textContent = names[status] + (condition ? ' (' + condition + ')' : '');
              if (status === Strophe.Status.CONNECTED) {
                connected(true);
                log('system', '', 'connected as ' + connection.jid + ' over ' + transport);
                connection.addHandler(function (message) {
                  var body = message.getElementsByTagName('body')[0];
                  if (body) { log('in', Strophe.getBareJidFromJid(message.getAttribute('from')), Strophe.getText(body)); }
                  return true;
                }, null, 'message', 'chat');
                connection.send($pres());
              } else if (status === Strophe.Status.DISCONNECTED || status === Strophe.Status.CONNFAIL || status === Strophe.Status.AUTHFAIL) {
                connected(false);
                log(status === Strophe.Status.DISCONNECTED ? 'system' : 'error', '', names[status] + (condition ? ': ' + condition : ''));
              }
            });
          };
          $('disconnect').onclick = function () { if (connection) { connection.disconnect('bye'); } };
          $('send').onclick = function () {
            var to = $('to').value, text = $('text').value;
            if (!to || !text) { return; }
            connection.send($msg({ to: to, type: 'chat' }).c('body').t(text));
            log('out', 'me', text);
            $('text').value = '';
          };
        })();
        </script>
        </body>
        </html>

        """
}
