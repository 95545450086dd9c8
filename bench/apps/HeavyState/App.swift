// The smart-building chain with a heavy @Placed state, for measuring moves (bench/reliability.py
// check 13): movingAvg keeps the last STATE_VALUES temperatures (default 80,000, about 1 MB as
// JSON) besides the running average, so every hand-over carries that much.
import Dyninka
import Foundation

struct Reading: Codable {
    var sensor: String
    var variable: String
    var units: String
    var timestamp: String
    var value: Double
    var location: String
}

struct Temperature: Codable { var value: Double }
struct Average: Codable { var average: Double; var count: Int; var kept: Int }

@Placed("movingAvg") var count = 0
@Placed("movingAvg") var average = 0.0
/// The newest temperatures, oldest first; filled to its size at the first call so that the state
/// is heavy from the start.
@Placed("movingAvg") var window: [Double] = []

let sensor = (ProcessInfo.processInfo.environment["SENSOR_URL"] ?? "http://127.0.0.1:8079") + "/next"
let windowSize = Int(ProcessInfo.processInfo.environment["STATE_VALUES"] ?? "") ?? 80_000

@Service func get() async throws -> Reading {
    try await Fetch.json(Reading.self, from: sensor)
}

extension Reading {
    @Service func filterTemperature() -> Reading? { variable == "Temperature" ? self : nil }
    @Service func map() -> Temperature { Temperature(value: value) }
}

extension Temperature {
    @Service(near: "map") func movingAvg() -> Average {
        if window.isEmpty { window = (0..<windowSize).map { 20 + Double($0 % 1000) / 1024 } }
        window.removeFirst()
        window.append(value)
        average = (value + Double(count) * average) / Double(count + 1)
        count += 1
        return Average(average: average, count: count, kept: window.count)
    }
}

@main struct HeavyState {
    static func main() async throws {
        let rows = Int(ProcessInfo.processInfo.environment["ROWS"] ?? "") ?? 1
        for _ in 0..<rows {
            if let result = try await get().filterTemperature()?.map().movingAvg() {
                print(result.average, result.count, result.kept)
            }
        }
    }
}
