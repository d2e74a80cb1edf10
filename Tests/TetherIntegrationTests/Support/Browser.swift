import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Headless Chromium driven over W3C WebDriver by Debian's chromedriver, both started by the test
/// and stopped by `quit()` (pages run real Strophe.js against a real Tether).
final class Browser: @unchecked Sendable {
    static let chromium = "/usr/bin/chromium"
    static let chromedriver = "/usr/bin/chromedriver"

    static var isInstalled: Bool {
        FileManager.default.isExecutableFile(atPath: Self.chromium) && FileManager.default.isExecutableFile(atPath: Self.chromedriver)
    }

    private let driver: ChildProcess
    private let base: String
    private let session: String
    private let http: HTTPClient
    private let profile: URL
    let log: String

    private init(driver: ChildProcess, base: String, session: String, http: HTTPClient, profile: URL, log: String) {
        self.driver = driver
        self.base = base
        self.session = session
        self.http = http
        self.profile = profile
        self.log = log
    }

    /// - Parameter acceptInsecureCertificates: trust any certificate (WebDriver's
    ///   `acceptInsecureCerts`), for pages that reach a listener with a throwaway CA.
    static func start(http: HTTPClient, acceptInsecureCertificates: Bool = false) async throws -> Browser {
        guard Self.isInstalled else {
            throw TestFailure("chromium and chromium-driver are not installed (scripts/install-deps.sh --with-browser)")
        }
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("tether-chromium-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: profile, withIntermediateDirectories: true)
        let log = profile.appendingPathComponent("chromedriver.log").path
        var driver: ChildProcess
        var base: String
        var attempt = 0
        while true {
            // The port is reserved on IPv4 only; chromedriver also binds it on IPv6 and exits when
            // that is taken (an ephemeral port of some IPv6 client): then it gets another port.
            attempt += 1
            let reserved = try ReservedPort()
            let port = reserved.port
            reserved.release()
            driver = try ChildProcess.spawn(Self.chromedriver, ["--port=\(port)", "--allowed-ips=127.0.0.1"], stdout: log, stderr: log)
            base = "http://127.0.0.1:\(port)"
            do {
                try await Self.waitForDriver(base: base, http: http, driver: driver)
                break
            } catch {
                let exited = !driver.isRunning
                await driver.stop()
                guard exited, attempt < 3 else {
                    print("chromedriver log:\n\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
                    try? FileManager.default.removeItem(at: profile)
                    throw error
                }
            }
        }
        do {
            let capabilities: [String: Any] = [
                "capabilities": [
                    "alwaysMatch": [
                        "browserName": "chrome",
                        "acceptInsecureCerts": acceptInsecureCertificates,
                        "goog:chromeOptions": [
                            "binary": Self.chromium,
                            "args": [
                                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                "--no-first-run", "--disable-extensions", "--user-data-dir=\(profile.path)/profile",
                            ],
                        ],
                    ]
                ]
            ]
            let created = try await Self.call(http: http, .POST, base + "/session", capabilities)
            guard let value = created["value"] as? [String: Any], let session = value["sessionId"] as? String else {
                throw TestFailure("chromedriver did not create a session: \(created)")
            }
            return Browser(driver: driver, base: base, session: session, http: http, profile: profile, log: log)
        } catch {
            print("chromedriver log:\n\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            await driver.stop()
            try? FileManager.default.removeItem(at: profile)
            throw error
        }
    }

    /// Closes the browser (ending the WebDriver session ends Chromium) and stops chromedriver.
    func quit() async {
        _ = try? await Self.call(http: self.http, .DELETE, "\(self.base)/session/\(self.session)", nil)
        await self.driver.stop()
        try? FileManager.default.removeItem(at: self.profile)
    }

    func open(_ url: String) async throws {
        _ = try await self.command(.POST, "url", ["url": url])
    }

    /// Reloads the page, as a user pressing F5 (returns once the new page has loaded).
    func reload() async throws {
        _ = try await self.command(.POST, "refresh", [String: Any]())
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page and returns its result.
    @discardableResult
    func run(_ script: String, _ args: [Any] = []) async throws -> Any? {
        let answer = try await self.command(.POST, "execute/sync", ["script": script, "args": args])
        return answer["value"]
    }

    /// The text of the element with this id ("" when absent).
    func text(of id: String) async throws -> String {
        (try await self.run("var e = document.getElementById(arguments[0]); return e ? e.textContent : '';", [id]) as? String) ?? ""
    }

    /// Waits until the element's text satisfies `predicate`; returns that text.
    @discardableResult
    /// Generous: a login is a dozen round trips through the page, Tether and Prosody, and a
    /// loaded machine took 18 s for one (Prosody alone 11 s to authenticate); no test asserts a speed.
    func waitForText(of id: String, timeout: Duration = .seconds(60), _ predicate: (String) -> Bool) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        var last = ""
        while ContinuousClock.now < deadline {
            last = try await self.text(of: id)
            if predicate(last) { return last }
            try await Task.sleep(for: .milliseconds(100))
        }
        let log = (try? await self.text(of: "log")) ?? ""
        throw TestFailure("#\(id) never matched; it reads '\(last)'; page log: \(log)")
    }

    /// Waits until `script` returns true in the page.
    func waitUntil(_ script: String, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await self.run(script) as? Bool == true { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("the page never satisfied: \(script)")
    }

    private func command(_ method: HTTPMethod, _ path: String, _ body: [String: Any]?) async throws -> [String: Any] {
        let answer = try await Self.call(http: self.http, method, "\(self.base)/session/\(self.session)/\(path)", body)
        if let value = answer["value"] as? [String: Any], let error = value["error"] as? String {
            throw TestFailure("WebDriver \(path): \(error): \(value["message"] as? String ?? "")")
        }
        return answer
    }

    private static func call(http: HTTPClient, _ method: HTTPMethod, _ url: String, _ body: [String: Any]?) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        }
        let response = try await http.execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return (try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView))) as? [String: Any] ?? [:]
    }

    private static func waitForDriver(base: String, http: HTTPClient, driver: ChildProcess) async throws {
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline && driver.isRunning {
            if let status = try? await Self.call(http: http, .GET, base + "/status", nil),
                let value = status["value"] as? [String: Any], value["ready"] as? Bool == true
            {
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestFailure("chromedriver did not become ready")
    }
}

/// Runs `body` with a fresh headless browser, always closed afterwards.
func withBrowser<T>(http: HTTPClient, acceptInsecureCertificates: Bool = false, _ body: (Browser) async throws -> T) async throws -> T {
    let browser = try await Browser.start(http: http, acceptInsecureCertificates: acceptInsecureCertificates)
    do {
        let result = try await body(browser)
        await browser.quit()
        return result
    } catch {
        await browser.quit()
        throw error
    }
}
