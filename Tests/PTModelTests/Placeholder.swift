import XCTest
final class PTModelTestsPlaceholder: XCTestCase { func testNothing() {} }
