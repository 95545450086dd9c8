import DyninkaRoute
import Testing

/// The route syntax alone: what host and compiler both parse and print.
@Suite struct RouteParserTests {
    let parser = RouteParser()

    @Test func parsesTheDefaultChainWithOptionalChaining() throws {
        let chain = try parser.parseChain("filterTemperature()?.map().movingAvg()")
        #expect(chain.calls.map(\.name) == ["filterTemperature", "map", "movingAvg"])
        #expect(chain.calls.map(\.optionalChained) == [false, true, false])
        #expect(chain.source == "filterTemperature()?.map().movingAvg()")
        #expect(chain.rest.source == "map().movingAvg()")
    }

    @Test func emptyAndBlankRoutesMeanStopHere() throws {
        #expect(try parser.parseChain("").isEmpty)
        #expect(try parser.parseChain("   ").isEmpty)
    }

    @Test func aLeadingDotIsAccepted() throws {
        #expect(try parser.parseChain(".map()").source == "map()")
        #expect(try parser.parseChain("?.map()").source == "map()")
    }

    @Test func parsesFanInAndLiterals() throws {
        let chain = try parser.parseChain(#"alert(conditions: weather(), limit: -3, ratio: 2.5e1, name: "a \"b\"\n", on: true, x: nil)"#)
        let arguments = chain.calls[0].arguments
        #expect(arguments.map(\.label) == ["conditions", "limit", "ratio", "name", "on", "x"])
        #expect(arguments[0].value == .chain(RouteChain(calls: [RouteCall(name: "weather", arguments: [], optionalChained: false)])))
        #expect(arguments[1].value == .literal(.int(-3)))
        #expect(arguments[2].value == .literal(.double(25)))
        #expect(arguments[3].value == .literal(.string("a \"b\"\n")))
        #expect(arguments[4].value == .literal(.bool(true)))
        #expect(arguments[5].value == .literal(.null))
        #expect(RouteLiteral.string("a \"b\"\n").json == #""a \"b\"\n""#)
    }

    @Test func printedRoutesParseBackToTheSameChain() throws {
        // The last two were found by the fuzzer: NUL and DEL in string literals.
        for text in ["a().b(x: c().d(y: 1)).e()", #"f(s: "\\ \u{1F600}")"#, "g(_: 1.5, h())",
                     #"m(s: ") , \0")"#, "m(s: \"\u{7f}\u{7f}\")"] {
            let chain = try parser.parseChain(text)
            #expect(try parser.parseChain(chain.source) == chain, "\(text) printed as \(chain.source)")
        }
    }

    @Test(arguments: [
        "http://evil.example/x()",
        "127.0.0.1:80",
        "map",
        "map(",
        "map())",
        "map().",
        "map() movingAvg()",
        #"map(x: "unterminated)"#,
        "map(x: 1 2)",
        "map(x: y)",
        "ma p()",
        "map()\u{0}",
        "map(x: 1e999)",
    ])
    func malformedRoutesAreRefused(_ text: String) {
        #expect(throws: RouteError.self) { try parser.parseChain(text) }
    }

    @Test func deepNestingIsRefused() {
        let deep = String(repeating: "a(x: ", count: 20) + "b()" + String(repeating: ")", count: 20)
        #expect(throws: RouteError.self) { try parser.parseChain(deep) }
    }

    @Test func routesWhoseEscapesExceedTheLimitAreRefused() {
        let parser = RouteParser(maxLength: 64)
        let text = "m(s: \"" + String(repeating: "\u{7f}", count: 40) + "\")"
        #expect(text.utf8.count <= 64)
        #expect(throws: RouteError.self) { try parser.parseChain(text) }
    }

    @Test func overlongRoutesAreRefused() {
        let long = Array(repeating: "map()", count: 3000).joined(separator: ".")
        #expect(throws: RouteError.self) { try parser.parseChain(long) }
    }

    @Test func callCountIncludesNestedArguments() throws {
        #expect(try parser.parseChain("a().b(x: c().d(), y: e()).f()").callCount == 6)
    }
}
