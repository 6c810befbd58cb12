import XCTest
final class PTRuntimeTestsPlaceholder: XCTestCase { func testNothing() {} }
