import XCTest
final class PTDataTestsPlaceholder: XCTestCase { func testNothing() {} }
