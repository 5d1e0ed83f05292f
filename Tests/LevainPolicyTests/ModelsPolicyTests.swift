import LevainPolicy
import Testing

@Suite struct ModelsPolicyTests {
    @Test("models.max_choices: 1 by default, 1 to 128, errors name the file, line and key")
    func maxChoices() throws {
        #expect(try PolicyLoader.parse("[models]\nallow = [\"*\"]", file: "p.toml", directory: nil).models.maxChoices == 1)
        #expect(try PolicyLoader.parse("[models]\nmax_choices = 4", file: "p.toml", directory: nil).models.maxChoices == 4)
        #expect(try PolicyLoader.load("default").models.maxChoices == 1)
        expectPolicyError("[models]\nmax_choices = 0", line: 2, key: "models.max_choices", "out of range 1...128")
        expectPolicyError("[models]\nallow = [\"*\"]\nmax_choices = 500", line: 3, key: "models.max_choices", "out of range 1...128")
        expectPolicyError("[models]\nmax_choices = \"off\"", line: 2, key: "models.max_choices", "an integer")
        expectPolicyError("[models]\nmax_choice = 2", line: 2, key: "models.max_choice", "did you mean \"max_choices\"")
    }
}
