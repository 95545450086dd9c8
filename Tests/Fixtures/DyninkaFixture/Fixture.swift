// A service table written by hand, shaped like what `dyninka build` generates. The host tests
// and the benchmarks load it with dlopen. Services:
//   get / filterTemperature / map / movingAvg   the paper's 4-step chain, with @Placed-like state
//   explode        throws                       drop       always returns nil
//   calibrate      async                        weather / alert(conditions:)   fan-in
//   scale(by:)     a literal argument           slow(ms:)  async, sleeps (for timeouts)
//   echo           RawJSON pass-through         hopA / hopB / blob   payload-size sweep
//   describe       async, fetches GET FIXTURE_FETCH_URL (a host's description) through the host's loop
import DyninkaRuntime
import Foundation
import Synchronization

struct Reading: Codable, Sendable { var sensor: String; var variable: String; var value: Double }
struct Temperature: Codable, Sendable { var value: Double }
struct Average: Codable, Sendable { var average: Double; var count: Int }
struct Weather: Codable, Sendable { var condition: String; var outside: Double }
struct Alert: Codable, Sendable { var level: String; var average: Double; var condition: String }
struct BlobRequest: Codable, Sendable { var size: Int }
struct Blob: Codable, Sendable { var data: String }

/// What a dyninka-host answers to GET / (the fields describe reads).
struct HostDescription: Codable, Sendable { var app: String; var service: String }

struct FixtureError: Error, CustomStringConvertible { var description: String }

// State placed on the get service: the row counter.
let rowCounter = Mutex(0)
// State placed on the movingAvg service, movable as generated code moves it (snapshot/restore).
struct MovingState: Codable, Sendable { var count = 0; var average = 0.0 }
let movingState = PlacedState(MovingState())

func get() -> Reading {
    let i = rowCounter.withLock { n -> Int in defer { n += 1 }; return n }
    let variables = ["Temperature", "Humidity", "CO2"]
    return Reading(sensor: "room-\(i % 7)", variable: variables[i % 3], value: 20 + Double(i % 10))
}

extension Reading {
    func filterTemperature() -> Reading? { variable == "Temperature" ? self : nil }
    func map() -> Temperature { Temperature(value: value) }
    func explode() throws -> Reading { throw FixtureError(description: "sensor \(sensor) exploded") }
    func drop() -> Reading? { nil }
}

extension Temperature {
    func movingAvg() -> Average {
        movingState.withLock { s in
            s.average = (value + Double(s.count) * s.average) / Double(s.count + 1)
            s.count += 1
            return Average(average: s.average, count: s.count)
        }
    }
    func calibrate() async -> Temperature {
        await Task.yield()
        return Temperature(value: value - 0.5)
    }
    func scale(by factor: Double) -> Temperature { Temperature(value: value * factor) }
    func slow(ms: Int) async throws -> Temperature {
        try await Task.sleep(for: .milliseconds(ms))
        return self
    }
}

/// Fetches FIXTURE_FETCH_URL (timeout FIXTURE_FETCH_TIMEOUT seconds, default 2), twice in a row
/// on purpose: the second GET reuses the kept-alive connection of the first.
func describe() async throws -> HostDescription {
    let environment = ProcessInfo.processInfo.environment
    let url = environment["FIXTURE_FETCH_URL"] ?? "http://127.0.0.1:1/"
    let timeout = Double(environment["FIXTURE_FETCH_TIMEOUT"] ?? "") ?? 2
    let first = try await Fetch.json(HostDescription.self, from: url, timeout: timeout)
    let second = try await Fetch.json(HostDescription.self, from: url, timeout: timeout)
    guard first.service == second.service else { throw FixtureError(description: "two fetches disagree") }
    return second
}

func weather() -> Weather { Weather(condition: "sunny", outside: 31) }

extension Average {
    func alert(conditions: Weather) -> Alert {
        Alert(level: average > 25 || conditions.outside > 30 ? "warn" : "ok", average: average, condition: conditions.condition)
    }
}

extension BlobRequest {
    func hopA() -> BlobRequest { self }
    func hopB() -> BlobRequest { self }
    func blob() -> Blob { Blob(data: String(repeating: "x", count: max(0, size - 11))) }
}

let table = ServiceTable(appName: "Fixture", entryService: "get", services: [
    ServiceExport(name: "get", outputType: "Reading", placedState: ["rowCounter"],
                  defaultRoute: "filterTemperature()?.map().movingAvg()",
                  entry: { ServiceCall.run($0) { _ in get() } }),
    ServiceExport(name: "filterTemperature", inputType: "Reading", outputType: "Reading", outputOptional: true,
                  defaultRoute: "map().movingAvg()",
                  entry: { ServiceCall.run($0) { try $0.input(Reading.self).filterTemperature() } }),
    ServiceExport(name: "map", inputType: "Reading", outputType: "Temperature", defaultRoute: "movingAvg()",
                  entry: { ServiceCall.run($0) { try $0.input(Reading.self).map() } }),
    ServiceExport(name: "movingAvg", inputType: "Temperature", outputType: "Average", placedState: ["movingState"],
                  entry: { ServiceCall.run($0) { try $0.input(Temperature.self).movingAvg() } },
                  stateHash: "fixture-moving-1",
                  snapshot: { data, length in PlacedSnapshot.snapshot([PlacedSnapshot.variable("movingState", movingState)], data, length) },
                  restore: { data, length, message, messageLength in
                      PlacedSnapshot.restore([PlacedSnapshot.variable("movingState", movingState)], data, length, message, messageLength) }),
    ServiceExport(name: "explode", inputType: "Reading", outputType: "Reading", isThrowing: true,
                  entry: { ServiceCall.run($0) { try $0.input(Reading.self).explode() } }),
    ServiceExport(name: "drop", inputType: "Reading", outputType: "Reading", outputOptional: true,
                  entry: { ServiceCall.run($0) { try $0.input(Reading.self).drop() } }),
    ServiceExport(name: "calibrate", inputType: "Temperature", outputType: "Temperature", isAsync: true,
                  entry: { ServiceCall.runAsync($0, decode: { try $0.input(Temperature.self) }) { await $0.calibrate() } }),
    ServiceExport(name: "scale", inputType: "Temperature", outputType: "Temperature",
                  parameters: [ParameterExport(label: "by", type: "Double")],
                  entry: { ServiceCall.run($0) { try $0.input(Temperature.self).scale(by: $0.argument(0, Double.self, label: "by")) } }),
    ServiceExport(name: "slow", inputType: "Temperature", outputType: "Temperature", isAsync: true, isThrowing: true,
                  parameters: [ParameterExport(label: "ms", type: "Int")],
                  entry: { ServiceCall.runAsync($0, decode: { (try $0.input(Temperature.self), try $0.argument(0, Int.self, label: "ms")) }) {
                      try await $0.0.slow(ms: $0.1) } }),
    ServiceExport(name: "describe", outputType: "HostDescription", isAsync: true, isThrowing: true,
                  entry: { ServiceCall.runAsync($0, decode: { _ in () }) { _ in try await describe() } }),
    ServiceExport(name: "weather", outputType: "Weather", entry: { ServiceCall.run($0) { _ in weather() } }),
    ServiceExport(name: "alert", inputType: "Average", outputType: "Alert",
                  parameters: [ParameterExport(label: "conditions", type: "Weather", defaultArgument: "weather()")],
                  entry: { ServiceCall.run($0) {
                      try $0.input(Average.self).alert(conditions: $0.argument(0, Weather.self, label: "conditions")) } }),
    ServiceExport(name: "echo", inputType: "RawJSON", outputType: "RawJSON",
                  entry: { ServiceCall.run($0) { try $0.input(RawJSON.self) } }),
    ServiceExport(name: "hopA", inputType: "BlobRequest", outputType: "BlobRequest", defaultRoute: "hopB().blob()",
                  entry: { ServiceCall.run($0) { try $0.input(BlobRequest.self).hopA() } }),
    ServiceExport(name: "hopB", inputType: "BlobRequest", outputType: "BlobRequest", defaultRoute: "blob()",
                  entry: { ServiceCall.run($0) { try $0.input(BlobRequest.self).hopB() } }),
    ServiceExport(name: "blob", inputType: "BlobRequest", outputType: "Blob",
                  entry: { ServiceCall.run($0) { try $0.input(BlobRequest.self).blob() } }),
])

@_cdecl("dyninka_service_table")
public func dyninkaServiceTable() -> UnsafeRawPointer { table.pointer }
