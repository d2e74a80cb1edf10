/// A page holding several Strophe.js BOSH connections at once, as several tabs of one browser
/// would (they share the browser's connections to the BOSH origin): `tabs.open(service, n,
/// password, wait)` logs in `tab0@localhost` … `tab{n-1}@localhost`; the test reads each tab's
/// status and what it received.
enum MultiTabPage {
    static let html = """
        <!doctype html>
        <html><head><meta charset="utf-8"><title>Tether tabs test</title></head>
        <body>
        <script src="/strophe.js"></script>
        <script>
        var all = [];
        window.tabs = {
          // Opens tab `index` (one Strophe connection); the others are untouched.
          open: function (service, index, password, wait) {
            var tab = { status: 'connecting', received: [], conn: new Strophe.Connection(service) };
            all[index] = tab;
            tab.conn.connect('tab' + index + '@localhost/browser', password, function (status) {
              if (status === Strophe.Status.CONNECTED) {
                tab.conn.addHandler(function (message) {
                  var body = message.getElementsByTagName('body')[0];
                  if (body) { tab.received.push(Strophe.getText(body)); }
                  return true;
                }, null, 'message');
                tab.conn.send($pres());
                tab.status = 'connected';
              } else if (status === Strophe.Status.CONNFAIL || status === Strophe.Status.AUTHFAIL) {
                tab.status = 'failed';
              }
            }, wait, 1);
          },
          status: function (index) { return all[index] ? all[index].status : 'none'; },
          jid: function (index) { return all[index].conn.jid; },
          received: function (index, text) { return all[index].received.indexOf(text) >= 0; },
          send: function (index, to, text) {
            all[index].conn.send($msg({ to: to, type: 'chat' }).c('body').t(text));
          }
        };
        </script>
        </body></html>
        """
}
