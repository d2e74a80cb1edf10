import Foundation
import NIOCore
import Testing
import XMPPClientCore

@testable import XMPPLoadKit

@Suite("Loss accounting, probes and histograms")
struct MeasurementTests {
    @Test("sent, delivered, duplicate, unknown and in flight")
    func ledger() {
        var ledger = MessageLedger()
        let first = ledger.send()
        let second = ledger.send()
        let third = ledger.send()
        #expect([first, second, third] == [1, 2, 3])
        #expect(ledger.deliver(1) == .first)
        #expect(ledger.deliver(3) == .first)
        #expect(ledger.deliver(1) == .duplicate)
        #expect(ledger.deliver(99) == .unknown)
        #expect(ledger.sent == 3)
        #expect(ledger.delivered == 2)
        #expect(ledger.duplicates == 1)
        #expect(ledger.unknown == 1)
        #expect(ledger.inFlight == 1)
    }

    @Test("worker stats: latency recorded once per message, duplicates counted as errors")
    func workerStats() {
        var stats = WorkerStats()
        let sequence = stats.recordSend(population: 0)
        stats.recordDelivery(sequence: sequence, sentAtNanos: 1_000_000, nowNanos: 3_000_000, population: 0)
        stats.recordDelivery(sequence: sequence, sentAtNanos: 1_000_000, nowNanos: 4_000_000, population: 0)
        #expect(stats.latency.count == 1)
        let chat = stats.behaviours[BehaviourKey(population: 0, kind: .chat)]
        #expect(chat?.attempts == 1 && chat?.successes == 1 && chat?.latency.count == 1)
        #expect(stats.latency.summary.p50 == 2.0)
        #expect(stats.errors == ["protocol:duplicate-message": 1])
        let sample = stats.takeSample(sessionsUp: 2, threadCPUSeconds: 0)
        #expect(sample.sent == 1)
        #expect(sample.delivered == 1)
        #expect(stats.interval.count == 0)
        #expect(stats.latency.count == 1)
    }

    @Test("the probe is found in a routed message whatever the attributes around it")
    func probe() {
        let message = ByteBuffer(string: "<message from='a@b/c' xmlns='jabber:client' type='chat' to='d@e/f' id='m7'><body>tl:7:123456789 xxxx</body></message>")
        let probe = StanzaScanner.probe(in: message)
        #expect(probe?.sequence == 7)
        #expect(probe?.timestamp == 123_456_789)
        #expect(StanzaScanner.probe(in: ByteBuffer(string: "<message><body>hello tl: 1</body></message>")) == nil)
    }

    @Test("the message a worker builds carries its probe and parses back")
    func messageRoundTrip() throws {
        let text = "<message xmlns='jabber:client' type='chat' to='user2@localhost/load' id='m42'><body>tl:42:987654321</body></message>"
        let buffer = ByteBuffer(string: text)
        #expect(StanzaScanner.attribute("to", in: buffer) == "user2@localhost/load")
        #expect(StanzaScanner.attribute("id", in: buffer) == "m42")
        #expect(StanzaScanner.attribute("type", in: buffer) == "chat")
        #expect(StanzaScanner.attribute("from", in: buffer) == nil)
        #expect(StanzaScanner.probe(in: buffer)?.sequence == 42)
        #expect(StanzaScanner.attribute("to", in: ByteBuffer(string: "<message to=\"a&amp;b\"/>")) == "a&b")
    }

    @Test("histogram summary in milliseconds")
    func histogram() {
        var histogram = LatencyHistogram()
        for millis in 1...100 { histogram.record(nanoseconds: UInt64(millis) * 1_000_000) }
        let summary = histogram.summary
        #expect(summary.count == 100)
        #expect(abs(summary.p50 - 50) < 0.1)
        #expect(abs(summary.p99 - 99) < 0.1)
        #expect(abs(summary.max - 100) < 0.1)
        var merged = LatencyHistogram()
        merged.add(histogram)
        merged.add(histogram)
        #expect(merged.count == 200)
    }

    @Test("VmRSS is read from /proc/PID/status; this process has one")
    func rss() {
        #expect(ResourceUsage.parseVmRSS("Name:\tx\nVmPeak:\t  1000 kB\nVmRSS:\t    5120 kB\n") == 5120)
        #expect((ResourceUsage.residentKiB(pid: getpid()) ?? 0) > 0)
        #expect(ResourceUsage.residentKiB(pid: 999_999_999) == nil)
        #expect(ResourceUsage.processCPUSeconds() > 0)
        #expect(ResourceUsage.threadCPUSeconds() >= 0)
    }

    @Test("utime + stime are read from /proc/PID/stat, counted from the last parenthesis")
    func statCPU() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime …
        let line = "4242 (tether serve) S 1 4242 4242 0 -1 4194560 1200 0 3 0 250 75 0 0 20 0 3 0 100 2000000 900 18446744073709551615\n"
        #expect(ResourceUsage.parseStatCPUTicks(line) == 325)
        // A command name with ") " inside must not shift the fields.
        #expect(ResourceUsage.parseStatCPUTicks("7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 11 4 0 0 20 0 1 0") == 15)
        #expect(ResourceUsage.parseStatCPUTicks("7 (x) R 1 2") == nil)
        #expect(ResourceUsage.parseStatCPUTicks("garbage") == nil)
        #expect((ResourceUsage.processCPUSeconds(pid: getpid()) ?? -1) > 0)
        #expect(ResourceUsage.processCPUSeconds(pid: 999_999_999) == nil)
    }

    @Test("machine CPU from the cpu line of /proc/stat: busy is all but idle and iowait")
    func machineCPU() {
        let stat = "cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 50 2 25 400 10 0 1 1 0 0\nintr 1 2\n"
        let ticks = ResourceUsage.parseMachineCPU(stat)
        #expect(ticks?.total == 981)
        #expect(ticks?.busy == 161)
        #expect(ResourceUsage.parseMachineCPU("intr 1 2\n") == nil)
        #expect((ResourceUsage.machineCPUTicks()?.total ?? 0) > 0)
    }
}

@Suite("Scenario options")
struct LoadScenarioTests {
    @Test("endpoints of the three schemes")
    func endpoints() {
        #expect(Endpoint("http://127.0.0.1:5280/http-bind") == Endpoint(scheme: .http, host: "127.0.0.1", port: 5280, path: "/http-bind"))
        #expect(Endpoint("ws://localhost/xmpp-websocket") == Endpoint(scheme: .ws, host: "localhost", port: 80, path: "/xmpp-websocket"))
        #expect(Endpoint("tcp://[::1]:5222") == Endpoint(scheme: .tcp, host: "::1", port: 5222, path: "/"))
        #expect(Endpoint("tcp://example.org")?.port == 5222)
        #expect(Endpoint("https://x/") == nil)
        #expect(Endpoint("tcp://host:0") == nil)
        #expect(Endpoint("http://127.0.0.1:5280/http-bind")?.hostHeader == "127.0.0.1:5280")
    }

    @Test("users and passwords from patterns; pairs and idle sessions")
    func patterns() {
        let scenario = LoadScenario(endpoint: Endpoint("tcp://127.0.0.1:5222")!, userPattern: "load%d", passwordPattern: "pw-%d", firstUser: 10, sessions: 7, idleSessions: 2)
        #expect(scenario.username(0) == "load10")
        #expect(scenario.password(3) == "pw-13")
        #expect(scenario.messagingSessions == 4)
        #expect(scenario.validate().isEmpty)
    }

    @Test("stepped rates and validation")
    func stepped() {
        #expect(LoadScenario.Stepped("1000:500:3000")?.rates == [1000, 1500, 2000, 2500, 3000])
        #expect(LoadScenario.Stepped("0:1:2") == nil)
        #expect(LoadScenario.Stepped("5:1") == nil)
        var scenario = LoadScenario(transport: .bosh, endpoint: Endpoint("tcp://127.0.0.1:5222")!)
        #expect(scenario.validate().contains { $0.contains("does not go with") })
        scenario.populations[0].transport = .tcp
        scenario.referenceRate = 1000
        #expect(scenario.validate().contains { $0.contains("reference rate goes with a stepped run") })
        scenario.stepped = LoadScenario.Stepped("500:500:2000")
        #expect(scenario.validate().isEmpty)
        scenario.populations = []
        #expect(!scenario.validate().isEmpty)
    }
}
